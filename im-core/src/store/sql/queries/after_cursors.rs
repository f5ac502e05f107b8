//! [`AfterCursors`]: the SQL condition "a row after its conversation's
//! cursor", for batch reads of many conversations each with its own cursor.

/// `((conversation = ? AND seq > ?) OR ...)` over two columns of one table
/// for `(conversation, after_seq)` pairs; false for none. A query fragment
/// of our own because the number of branches is known only at run time and,
/// unlike a boxed filter, it is not tied to one backend.
#[derive(Debug, Clone)]
pub(crate) struct AfterCursors<Conv, Seq> {
    cursors: Vec<(i64, i64)>,
    conversation: Conv,
    seq: Seq,
}

impl<Conv, Seq> AfterCursors<Conv, Seq> {
    pub(crate) fn new(cursors: &[(i64, i64)], conversation: Conv, seq: Seq) -> Self {
        Self {
            cursors: cursors.to_vec(),
            conversation,
            seq,
        }
    }
}

impl<Conv, Seq> diesel::Expression for AfterCursors<Conv, Seq> {
    type SqlType = diesel::sql_types::Bool;
}

impl<Conv: diesel::Column, Seq> diesel::AppearsOnTable<Conv::Table> for AfterCursors<Conv, Seq> {}

impl<Conv, Seq, GroupBy> diesel::expression::ValidGrouping<GroupBy> for AfterCursors<Conv, Seq> {
    type IsAggregate = diesel::expression::is_aggregate::No;
}

impl<Conv, Seq> diesel::query_builder::QueryId for AfterCursors<Conv, Seq> {
    type QueryId = ();
    // The SQL text depends on the number of cursors.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<DB, Conv, Seq> diesel::query_builder::QueryFragment<DB> for AfterCursors<Conv, Seq>
where
    DB: diesel::backend::Backend,
    i64: diesel::serialize::ToSql<diesel::sql_types::BigInt, DB>,
    Conv: diesel::query_builder::QueryFragment<DB>,
    Seq: diesel::query_builder::QueryFragment<DB>,
{
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, DB>,
    ) -> diesel::QueryResult<()> {
        // One statement per number of cursors: not worth a cached statement each.
        out.unsafe_to_cache_prepared();
        if self.cursors.is_empty() {
            out.push_sql("1 = 0");
            return Ok(());
        }
        out.push_sql("(");
        for (i, (conversation, after_seq)) in self.cursors.iter().enumerate() {
            if i > 0 {
                out.push_sql(" OR ");
            }
            out.push_sql("(");
            self.conversation.walk_ast(out.reborrow())?;
            out.push_sql(" = ");
            out.push_bind_param::<diesel::sql_types::BigInt, _>(conversation)?;
            out.push_sql(" AND ");
            self.seq.walk_ast(out.reborrow())?;
            out.push_sql(" > ");
            out.push_bind_param::<diesel::sql_types::BigInt, _>(after_seq)?;
            out.push_sql(")");
        }
        out.push_sql(")");
        Ok(())
    }
}
