//! The reaction summary a message carries ([`v1::Message::reactions`]),
//! built by one rule on every backend: each emoji in the order it was first
//! used on the message (an emoji whose last reaction is taken back leaves
//! the list), with its count and the first [`REACTION_USERS_LISTED`] users
//! by (time of reaction, user id).

use crate::model::{REACTION_USERS_LISTED, UserId};
use im_protocol::v1;

/// Sets the entry of `emoji` in `summary` to `count` users, `first` of them
/// listed (already in order, at most [`REACTION_USERS_LISTED`]).
pub(crate) fn set_entry(summary: &mut Vec<v1::Reaction>, emoji: &str, count: u32, first: Vec<UserId>) {
    debug_assert!(first.len() <= REACTION_USERS_LISTED);
    match (summary.iter().position(|r| r.emoji == emoji), count) {
        (Some(i), 0) => {
            summary.remove(i);
        }
        (Some(i), _) => {
            summary[i].count = count;
            summary[i].user_ids = first;
        }
        (None, 0) => {}
        (None, _) => summary.push(v1::Reaction {
            emoji: emoji.to_owned(),
            count,
            user_ids: first,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_keep_first_use_order_and_leave_at_zero() {
        let mut s = Vec::new();
        set_entry(&mut s, "👍", 1, vec![7]);
        set_entry(&mut s, "🎉", 1, vec![8]);
        set_entry(&mut s, "👍", 2, vec![7, 9]);
        assert_eq!(
            s.iter().map(|r| (r.emoji.as_str(), r.count)).collect::<Vec<_>>(),
            [("👍", 2), ("🎉", 1)]
        );
        set_entry(&mut s, "👍", 0, vec![]);
        set_entry(&mut s, "👍", 1, vec![9]);
        assert_eq!(
            s.iter().map(|r| r.emoji.as_str()).collect::<Vec<_>>(),
            ["🎉", "👍"]
        );
    }
}
