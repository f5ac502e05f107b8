//! Membership changes and group administration: joins and leaves,
//! invitations, join requests, bans, roles, mutes and the join policy,
//! applied inside the append of the system message announcing them (so in
//! its savepoint: a change that fails writes nothing), and their reads.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::conversations::insert_member_if_absent;
use super::{CHUNK, ids};
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use diesel::prelude::{ExpressionMethods, JoinOnDsl, OptionalExtension, QueryDsl};
use im_protocol::v1;

/// Applies a membership change to conversation `conv`, or fails saying why
/// (see [`Membership`]); the caller's savepoint undoes a partial change.
pub(crate) fn apply_membership<C: SqlConnection>(
    c: &mut C,
    conv: i64,
    change: &Membership,
    at: i64,
) -> StoreResult<()> {
    match change {
        Membership::Add(list) => {
            let users: Vec<UserId> = list.iter().map(|&(u, _)| u).collect();
            refuse_banned(c, conv, &users)?;
            for &(user, role) in list {
                insert_member_if_absent(c, conv, user as i64, role as i32, at)?;
            }
            drop_pending(c, conv, &users)?;
        }
        Membership::Remove(user) => remove_member(c, conv, *user as i64)?,
        Membership::Invite { users, by } => {
            refuse_banned(c, conv, users)?;
            let mut members = Vec::new();
            for chunk in ids(users).chunks(CHUNK) {
                members.extend(
                    members::table
                        .filter(members::conversation_id.eq(conv))
                        .filter(members::user_id.eq_any(chunk))
                        .select(members::user_id)
                        .rows::<i64, _>(c)?,
                );
            }
            for &user in users {
                if members.contains(&(user as i64)) {
                    continue;
                }
                diesel::insert_into(invitations::table)
                    .values((
                        invitations::conversation_id.eq(conv),
                        invitations::user_id.eq(user as i64),
                        invitations::invited_by.eq(*by as i64),
                        invitations::created_at.eq(at),
                    ))
                    .on_conflict_do_nothing()
                    .run(c)?;
            }
        }
        Membership::AcceptInvitation(user) => {
            if delete_invitation(c, conv, *user)? == 0 {
                return Err(no_invitation(*user, conv));
            }
            insert_member_if_absent(c, conv, *user as i64, v1::Role::Member as i32, at)?;
            drop_pending(c, conv, &[*user])?;
        }
        Membership::DeclineInvitation(user) => {
            if delete_invitation(c, conv, *user)? == 0 {
                return Err(no_invitation(*user, conv));
            }
        }
        Membership::RequestJoin(user) => {
            refuse_banned(c, conv, &[*user])?;
            let member = members::table
                .find((conv, *user as i64))
                .select(members::user_id)
                .first_row::<i64, _>(c)
                .optional()?;
            if member.is_some() {
                return Err(StoreError::Conflict(format!(
                    "user {user} is a member of conversation {conv} already"
                )));
            }
            diesel::insert_into(join_requests::table)
                .values((
                    join_requests::conversation_id.eq(conv),
                    join_requests::user_id.eq(*user as i64),
                    join_requests::created_at.eq(at),
                ))
                .on_conflict_do_nothing()
                .run(c)?;
        }
        Membership::DecideJoin { user, approve } => {
            let n = diesel::delete(join_requests::table.find((conv, *user as i64))).run(c)?;
            if n == 0 {
                return Err(StoreError::NotFound(format!(
                    "user {user} has no join request in conversation {conv}"
                )));
            }
            if *approve {
                insert_member_if_absent(c, conv, *user as i64, v1::Role::Member as i32, at)?;
                drop_pending(c, conv, &[*user])?;
            }
        }
        Membership::Ban { user, by } => {
            remove_member(c, conv, *user as i64)?;
            drop_pending(c, conv, &[*user])?;
            diesel::insert_into(bans::table)
                .values((
                    bans::conversation_id.eq(conv),
                    bans::user_id.eq(*user as i64),
                    bans::banned_by.eq(*by as i64),
                    bans::created_at.eq(at),
                ))
                .on_conflict_do_nothing()
                .run(c)?;
        }
        Membership::Unban(user) => {
            if diesel::delete(bans::table.find((conv, *user as i64))).run(c)? == 0 {
                return Err(StoreError::NotFound(format!(
                    "user {user} is not banned from conversation {conv}"
                )));
            }
        }
        Membership::Roles(roles) => {
            for &(user, role) in roles {
                let n = diesel::update(members::table.find((conv, user as i64)))
                    .set(members::role.eq(role as i32))
                    .run(c)?;
                if n == 0 {
                    return Err(not_member(user, conv));
                }
            }
        }
        Membership::Mute { user, until } => {
            let n = diesel::update(members::table.find((conv, *user as i64)))
                .set(members::send_muted_until.eq(*until))
                .run(c)?;
            if n == 0 {
                return Err(not_member(*user, conv));
            }
        }
        Membership::MuteAll(muted) => {
            diesel::update(conversations::table.find(conv))
                .set(conversations::members_muted.eq(*muted))
                .run(c)?;
        }
        Membership::Policy(policy) => {
            diesel::update(conversations::table.find(conv))
                .set(conversations::join_policy.eq(*policy as i32))
                .run(c)?;
        }
    }
    Ok(())
}

/// Removes a member (nothing if not one) and their private log: a member
/// who comes back starts a new one.
fn remove_member<C: SqlConnection>(c: &mut C, conv: i64, user: i64) -> StoreResult<()> {
    diesel::delete(members::table.find((conv, user))).run(c)?;
    // A member who comes back starts a new private log; what blocks hid
    // from them (no private version) stays hidden.
    diesel::delete(
        hidden_messages::table
            .filter(hidden_messages::conversation_id.eq(conv))
            .filter(hidden_messages::user_id.eq(user))
            .filter(hidden_messages::private_version.ne(0)),
    )
    .run(c)?;
    Ok(())
}

/// `Forbidden` if one of `users` is banned from `conv`.
fn refuse_banned<C: SqlConnection>(c: &mut C, conv: i64, users: &[UserId]) -> StoreResult<()> {
    for chunk in ids(users).chunks(CHUNK) {
        let banned: Option<i64> = bans::table
            .filter(bans::conversation_id.eq(conv))
            .filter(bans::user_id.eq_any(chunk))
            .select(bans::user_id)
            .first_row(c)
            .optional()?;
        if let Some(user) = banned {
            return Err(StoreError::Forbidden(format!(
                "user {user} is banned from conversation {conv}"
            )));
        }
    }
    Ok(())
}

/// Drops the pending invitations and join requests of these users.
fn drop_pending<C: SqlConnection>(c: &mut C, conv: i64, users: &[UserId]) -> StoreResult<()> {
    for chunk in ids(users).chunks(CHUNK) {
        diesel::delete(
            invitations::table
                .filter(invitations::conversation_id.eq(conv))
                .filter(invitations::user_id.eq_any(chunk)),
        )
        .run(c)?;
        diesel::delete(
            join_requests::table
                .filter(join_requests::conversation_id.eq(conv))
                .filter(join_requests::user_id.eq_any(chunk)),
        )
        .run(c)?;
    }
    Ok(())
}

fn delete_invitation<C: SqlConnection>(c: &mut C, conv: i64, user: UserId) -> StoreResult<usize> {
    Ok(diesel::delete(invitations::table.find((conv, user as i64))).run(c)?)
}

fn no_invitation(user: UserId, conv: i64) -> StoreError {
    StoreError::NotFound(format!("user {user} has no invitation to conversation {conv}"))
}

fn not_member(user: UserId, conv: i64) -> StoreError {
    StoreError::NotFound(format!("user {user} is not a member of conversation {conv}"))
}

// ------------------------------------------------------------ reads

/// See `Store::standing`.
pub(crate) fn standing<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    user: UserId,
) -> StoreResult<Standing> {
    let key = (conversation as i64, user as i64);
    Ok(Standing {
        member: super::member(c, conversation, user)?,
        ban: bans::table
            .find(key)
            .select(BAN)
            .first_row::<BanRow, _>(c)
            .optional()?
            .map(Into::into),
        invitation: invitations::table
            .find(key)
            .select(INVITATION)
            .first_row::<InvitationRow, _>(c)
            .optional()?
            .map(Into::into),
        join_request: join_requests::table
            .find(key)
            .select(JOIN_REQUEST)
            .first_row::<JoinRequestRow, _>(c)
            .optional()?
            .map(Into::into),
    })
}

/// See `Store::invitations_of`.
pub(crate) fn invitations_of<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    limit: u32,
) -> StoreResult<Vec<(ConversationRecord, InvitationRecord)>> {
    let rows: Vec<(ConvRow, InvitationRow)> = invitations::table
        .inner_join(conversations::table.on(conversations::id.eq(invitations::conversation_id)))
        .filter(invitations::user_id.eq(user as i64))
        .order((invitations::created_at.desc(), invitations::conversation_id.asc()))
        .limit(i64::from(limit))
        .select((CONVERSATION, INVITATION))
        .rows(c)?;
    Ok(rows
        .into_iter()
        .map(|(conv, i)| (conv.into(), i.into()))
        .collect())
}

/// See `Store::join_requests`.
pub(crate) fn join_requests<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    limit: u32,
) -> StoreResult<Vec<JoinRequestRecord>> {
    let rows: Vec<JoinRequestRow> = join_requests::table
        .filter(join_requests::conversation_id.eq(conversation as i64))
        .order((join_requests::created_at.asc(), join_requests::user_id.asc()))
        .limit(i64::from(limit))
        .select(JOIN_REQUEST)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// See `Store::bans`.
pub(crate) fn bans<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    after_user: UserId,
    limit: u32,
) -> StoreResult<Vec<BanRecord>> {
    let after = i64::try_from(after_user).unwrap_or(i64::MAX);
    let rows: Vec<BanRow> = bans::table
        .filter(bans::conversation_id.eq(conversation as i64))
        .filter(bans::user_id.gt(after))
        .order(bans::user_id.asc())
        .limit(i64::from(limit))
        .select(BAN)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

/// See `Store::members_page`.
pub(crate) fn members_page<C: SqlConnection>(
    c: &mut C,
    conversation: ConversationId,
    after_user: UserId,
    limit: u32,
) -> StoreResult<Vec<MemberRecord>> {
    let after = i64::try_from(after_user).unwrap_or(i64::MAX);
    let rows: Vec<MemberRow> = members::table
        .filter(members::conversation_id.eq(conversation as i64))
        .filter(members::user_id.gt(after))
        .order(members::user_id.asc())
        .limit(i64::from(limit))
        .select(MEMBER)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}
