//! Users and tokens.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::{CHUNK, ids};
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use diesel::expression_methods::EscapeExpressionMethods;
use diesel::prelude::{
    BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl, TextExpressionMethods,
};

pub(crate) fn create_user<C: SqlConnection>(c: &mut C, user: &NewUser) -> StoreResult<UserRecord> {
    let row: UserRow = diesel::insert_into(users::table)
        .values((
            users::username.eq(&user.username),
            users::username_lower.eq(user.username.to_lowercase()),
            users::display_name.eq(&user.display_name),
            users::display_lower.eq(user.display_name.to_lowercase()),
            users::password_hash.eq(&user.password_hash),
            users::created_at.eq(user.created_at),
        ))
        .returning(USER)
        .row(c)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("user name {:?} is taken", user.username))
            }
            other => other,
        })?;
    Ok(row.into())
}

/// The local user an external identity maps to.
pub(crate) fn user_by_identity<C: SqlConnection>(
    c: &mut C,
    issuer: &str,
    subject: &str,
) -> StoreResult<Option<UserRecord>> {
    let user_id: Option<i64> = identities::table
        .find((issuer, subject))
        .select(identities::user_id)
        .row(c)
        .optional()?;
    match user_id {
        Some(id) => Ok(users_by_ids(c, &[id as UserId])?.pop()),
        None => Ok(None),
    }
}

/// Creates a user and maps an external identity to it, in one transaction.
pub(crate) fn create_user_with_identity<C: SqlConnection>(
    c: &mut C,
    user: &NewUser,
    issuer: &str,
    subject: &str,
) -> StoreResult<UserRecord> {
    let created = create_user(c, user)?;
    diesel::insert_into(identities::table)
        .values((
            identities::issuer.eq(issuer),
            identities::subject.eq(subject),
            identities::user_id.eq(created.id as i64),
        ))
        .run(c)
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("identity {issuer}/{subject} is already mapped"))
            }
            other => other,
        })?;
    Ok(created)
}

pub(crate) fn user_by_name<C: SqlConnection>(c: &mut C, lower: &str) -> StoreResult<Option<UserRecord>> {
    Ok(users::table
        .filter(users::username_lower.eq(lower))
        .select(USER)
        .first_row::<UserRow, _>(c)
        .optional()?
        .map(Into::into))
}

pub(crate) fn users_by_ids<C: SqlConnection>(c: &mut C, list: &[UserId]) -> StoreResult<Vec<UserRecord>> {
    let mut out = Vec::with_capacity(list.len());
    for chunk in ids(list).chunks(CHUNK) {
        let rows: Vec<UserRow> = users::table
            .filter(users::id.eq_any(chunk))
            .select(USER)
            .rows(c)?;
        out.extend(rows.into_iter().map(UserRecord::from));
    }
    Ok(out)
}

/// `pattern` is a LIKE pattern escaped with `\`.
pub(crate) fn search_users<C: SqlConnection>(
    c: &mut C,
    pattern: &str,
    limit: u32,
) -> StoreResult<Vec<UserRecord>> {
    let rows: Vec<UserRow> = users::table
        .filter(
            users::username_lower
                .like(pattern)
                .escape('\\')
                .or(users::display_lower.like(pattern).escape('\\')),
        )
        .order(users::username_lower.asc())
        .limit(limit as i64)
        .select(USER)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) fn update_profile<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    display_name: Option<&str>,
    avatar_url: Option<&str>,
) -> StoreResult<UserRecord> {
    let target = users::table.find(user as i64);
    if let Some(d) = display_name {
        diesel::update(target)
            .set((
                users::display_name.eq(d),
                users::display_lower.eq(d.to_lowercase()),
            ))
            .run(c)?;
    }
    if let Some(a) = avatar_url {
        diesel::update(target).set(users::avatar_url.eq(a)).run(c)?;
    }
    target
        .select(USER)
        .first_row::<UserRow, _>(c)
        .optional()?
        .map(Into::into)
        .ok_or_else(|| StoreError::NotFound(format!("user {user}")))
}

pub(crate) fn set_last_seen<C: SqlConnection>(c: &mut C, user: UserId, at: i64) -> StoreResult<()> {
    diesel::update(users::table.find(user as i64))
        .set(users::last_seen.eq(at))
        .run(c)?;
    Ok(())
}

pub(crate) fn insert_token<C: SqlConnection>(
    c: &mut C,
    hash: &str,
    user: UserId,
    expires_at: i64,
) -> StoreResult<()> {
    diesel::insert_into(tokens::table)
        .values((
            tokens::token_hash.eq(hash),
            tokens::user_id.eq(user as i64),
            tokens::expires_at.eq(expires_at),
        ))
        .run(c)?;
    Ok(())
}

pub(crate) fn token<C: SqlConnection>(c: &mut C, hash: &str) -> StoreResult<Option<(UserId, i64)>> {
    Ok(tokens::table
        .find(hash)
        .select((tokens::user_id, tokens::expires_at))
        .first_row::<(i64, i64), _>(c)
        .optional()?
        .map(|(u, e)| (u as u64, e)))
}

pub(crate) fn delete_token<C: SqlConnection>(c: &mut C, hash: &str) -> StoreResult<()> {
    diesel::delete(tokens::table.find(hash)).run(c)?;
    Ok(())
}

pub(crate) fn purge_expired_tokens<C: SqlConnection>(c: &mut C, now: i64) -> StoreResult<u64> {
    let n = diesel::delete(tokens::table.filter(tokens::expires_at.le(now))).run(c)?;
    Ok(n as u64)
}
