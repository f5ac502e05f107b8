//! Which mentioned users a message keeps: the same rule on every backend.

use crate::model::UserId;

/// The members among `mentions` (`members` ascending), once each, in the
/// order given.
pub(crate) fn mentioned_members(mentions: &[UserId], members: &[UserId]) -> Vec<UserId> {
    let mut kept: Vec<UserId> = Vec::with_capacity(mentions.len());
    for &user in mentions {
        if members.binary_search(&user).is_ok() && !kept.contains(&user) {
            kept.push(user);
        }
    }
    kept
}
