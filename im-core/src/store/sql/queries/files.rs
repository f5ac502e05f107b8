//! Files: upload metadata, shares (recorded by the append), the clean-up's
//! look-ups and its guarded delete.

use super::super::rows::*;
use super::super::schema::*;
use super::super::{Run, SqlConnection};
use super::CHUNK;
use crate::model::*;
use crate::store::{StoreError, StoreResult};
use diesel::dsl::{exists, not};
use diesel::prelude::{BoolExpressionMethods, ExpressionMethods, OptionalExtension, QueryDsl};

pub(crate) fn create_file<C: SqlConnection>(c: &mut C, new: &NewFile) -> StoreResult<FileRecord> {
    let facts = &new.facts;
    diesel::insert_into(files::table)
        .values((
            files::id.eq(&new.id),
            files::uploader_id.eq(new.uploader_id as i64),
            files::name.eq(&new.name),
            files::size.eq(new.size as i64),
            files::status.eq(FILE_UPLOADING),
            files::created_at.eq(new.created_at),
            files::updated_at.eq(new.created_at),
            files::width.eq(facts.width.map(i64::from)),
            files::height.eq(facts.height.map(i64::from)),
            files::duration_ms.eq(facts.duration_ms.map(i64::from)),
            files::thumbnail_id.eq(&facts.thumbnail_id),
        ))
        .run(c)?;
    file(c, &new.id)?.ok_or_else(|| StoreError::NotFound(format!("file {}", new.id)))
}

pub(crate) fn file<C: SqlConnection>(c: &mut C, id: &str) -> StoreResult<Option<FileRecord>> {
    Ok(files::table
        .find(id)
        .select(FILE)
        .first_row::<FileRow, _>(c)
        .optional()?
        .map(Into::into))
}

pub(crate) fn files_exist<C: SqlConnection>(c: &mut C, ids: &[FileId]) -> StoreResult<Vec<FileId>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        out.extend(
            files::table
                .filter(files::id.eq_any(chunk))
                .select(files::id)
                .rows::<String, _>(c)?,
        );
    }
    Ok(out)
}

pub(crate) fn file_progress<C: SqlConnection>(c: &mut C, id: &str, stored: u64, at: i64) -> StoreResult<()> {
    let n = diesel::update(files::table.find(id))
        .set((files::stored_bytes.eq(stored as i64), files::updated_at.eq(at)))
        .run(c)?;
    if n == 0 {
        return Err(StoreError::NotFound(format!("file {id}")));
    }
    Ok(())
}

pub(crate) fn complete_file<C: SqlConnection>(
    c: &mut C,
    id: &str,
    done: &FileCompletion,
) -> StoreResult<FileRecord> {
    let n = diesel::update(files::table.find(id).filter(files::status.eq(FILE_UPLOADING)))
        .set((
            files::status.eq(FILE_COMPLETE),
            files::stored_bytes.eq(files::size),
            files::mime_type.eq(&done.mime_type),
            files::sha256.eq(&done.sha256),
            files::updated_at.eq(done.completed_at),
            files::completed_at.eq(Some(done.completed_at)),
        ))
        .run(c)?;
    match file(c, id)? {
        Some(f) if n == 1 => Ok(f),
        Some(_) => Err(StoreError::Conflict(format!("file {id} is already complete"))),
        None => Err(StoreError::NotFound(format!("file {id}"))),
    }
}

pub(crate) fn delete_file<C: SqlConnection>(c: &mut C, id: &str) -> StoreResult<bool> {
    diesel::delete(file_shares::table.filter(file_shares::file_id.eq(id))).run(c)?;
    Ok(diesel::delete(files::table.find(id)).run(c)? > 0)
}

/// In the append's transaction: every file a message refers to must be
/// complete; each is recorded as shared in the conversation. On PostgreSQL
/// the insert's foreign-key check locks the file row against the clean-up's
/// delete (see the migration).
pub(crate) fn share_files<C: SqlConnection>(
    c: &mut C,
    ids: &[FileId],
    conversation: i64,
    at: i64,
) -> StoreResult<()> {
    for id in ids {
        let complete: i64 = files::table
            .filter(files::id.eq(id))
            .filter(files::status.eq(FILE_COMPLETE))
            .count()
            .row(c)?;
        if complete == 0 {
            return Err(StoreError::NotFound(format!("file {id}")));
        }
        diesel::insert_into(file_shares::table)
            .values((
                file_shares::file_id.eq(id),
                file_shares::conversation_id.eq(conversation),
                file_shares::shared_at.eq(at),
            ))
            .on_conflict_do_nothing()
            .run(c)?;
    }
    Ok(())
}

pub(crate) fn file_shared_with<C: SqlConnection>(c: &mut C, id: &str, user: UserId) -> StoreResult<bool> {
    let n: i64 = file_shares::table
        .filter(file_shares::file_id.eq(id))
        .filter(
            file_shares::conversation_id.eq_any(
                members::table
                    .filter(members::user_id.eq(user as i64))
                    .select(members::conversation_id),
            ),
        )
        .count()
        .row(c)?;
    Ok(n > 0)
}

pub(crate) fn files_shared_with<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    limit: u32,
) -> StoreResult<Vec<SharedFile>> {
    let rows: Vec<(FileRow, i64, i64)> = files::table
        .inner_join(file_shares::table)
        .filter(
            file_shares::conversation_id.eq_any(
                members::table
                    .filter(members::user_id.eq(user as i64))
                    .select(members::conversation_id),
            ),
        )
        .filter(files::uploader_id.ne(user as i64))
        .order((file_shares::shared_at.desc(), files::id.asc()))
        .limit(limit as i64)
        .select((FILE, file_shares::conversation_id, file_shares::shared_at))
        .rows(c)?;
    Ok(rows
        .into_iter()
        .map(|(f, conversation, at)| SharedFile {
            file: f.into(),
            conversation_id: conversation as u64,
            shared_at: at,
        })
        .collect())
}

pub(crate) fn uploaded_bytes_since<C: SqlConnection>(
    c: &mut C,
    user: UserId,
    since: i64,
) -> StoreResult<u64> {
    // Summed here: SUM(BIGINT) is NUMERIC on PostgreSQL.
    let sizes: Vec<i64> = files::table
        .filter(files::uploader_id.eq(user as i64))
        .filter(files::created_at.ge(since))
        .select(files::size)
        .rows(c)?;
    Ok(sizes.into_iter().map(|s| s as u64).sum())
}

pub(crate) fn expired_files<C: SqlConnection>(
    c: &mut C,
    stale_before: i64,
    unshared_before: i64,
    limit: u32,
) -> StoreResult<Vec<FileRecord>> {
    let stale = files::status
        .eq(FILE_UPLOADING)
        .and(files::updated_at.lt(stale_before));
    let unshared = files::status
        .eq(FILE_COMPLETE)
        .and(files::completed_at.lt(unshared_before))
        .and(not(exists(
            file_shares::table.filter(file_shares::file_id.eq(files::id)),
        )));
    let rows: Vec<FileRow> = files::table
        .filter(stale.or(unshared))
        .limit(limit as i64)
        .select(FILE)
        .rows(c)?;
    Ok(rows.into_iter().map(Into::into).collect())
}

pub(crate) fn delete_expired_file<C: SqlConnection>(
    c: &mut C,
    id: &str,
    stale_before: i64,
    unshared_before: i64,
) -> StoreResult<bool> {
    let stale = files::status
        .eq(FILE_UPLOADING)
        .and(files::updated_at.lt(stale_before));
    let unshared = files::status
        .eq(FILE_COMPLETE)
        .and(files::completed_at.lt(unshared_before))
        .and(not(exists(
            file_shares::table.filter(file_shares::file_id.eq(files::id)),
        )));
    let n = diesel::delete(files::table.filter(files::id.eq(id)).filter(stale.or(unshared))).run(c)?;
    Ok(n > 0)
}
