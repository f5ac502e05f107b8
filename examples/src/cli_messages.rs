//! The terminal client's commands on messages: reply, edit, recall, react,
//! delete for me, search; and how changed messages are shown.

use super::Cli;
use im_client_sdk::{SendOptions, v1};
use tokio::io::AsyncWrite;

pub(super) const HELP: &str = "/reply MSG TEXT | /edit MSG TEXT | /recall MSG | /react MSG EMOJI | /unreact MSG EMOJI \
| /delete MSG | /search WORDS";

impl<W: AsyncWrite + Unpin> Cli<W> {
    /// Runs a message command (`cmd` is one of those in [`HELP`]).
    pub(super) async fn message_command(&mut self, cmd: &str, rest: &[&str]) -> anyhow::Result<()> {
        if cmd == "/search" {
            anyhow::ensure!(!rest.is_empty(), "usage: /search WORDS");
            let found = self.client()?.search(&rest.join(" "), None, 0, 20).await?;
            if found.messages.is_empty() {
                self.say("no message found").await?;
            }
            for m in found.messages {
                let line = self.render(&m).await;
                self.say(&line).await?;
            }
            return Ok(());
        }
        let (id, text) = match rest.split_first() {
            Some((id, text)) => (id.trim_start_matches('m').parse::<u64>()?, text.join(" ")),
            None => anyhow::bail!("usage: {HELP}"),
        };
        let conversation = match self.conversation_of.get(&id) {
            Some(&c) => c,
            None => self.current_conversation()?,
        };
        let client = self.client()?.clone();
        match cmd {
            "/reply" => {
                anyhow::ensure!(!text.is_empty(), "usage: /reply MSG TEXT");
                let options = SendOptions {
                    reply_to: Some(id),
                    ..Default::default()
                };
                client.send_text_with(conversation, &text, options).await?;
            }
            "/edit" => {
                anyhow::ensure!(!text.is_empty(), "usage: /edit MSG TEXT");
                client.edit_text(conversation, id, &text).await?;
            }
            "/recall" => {
                client.recall(conversation, id).await?;
            }
            "/react" | "/unreact" => {
                anyhow::ensure!(!text.is_empty(), "usage: {cmd} MSG EMOJI");
                if cmd == "/react" {
                    client.react(conversation, id, &text).await?;
                } else {
                    client.unreact(conversation, id, &text).await?;
                }
            }
            "/delete" => {
                client.delete_for_me(conversation, &[id]).await?;
            }
            _ => anyhow::bail!("unknown command {cmd}"),
        }
        Ok(())
    }

    fn current_conversation(&self) -> anyhow::Result<u64> {
        match self.target {
            super::Target::Conversation(id) => Ok(id),
            _ => anyhow::bail!("no current conversation: /join, /create, /group or /dm first"),
        }
    }

    /// A message's state after a change: edited, recalled, reactions.
    pub(super) async fn render_update(&mut self, m: &v1::Message) -> String {
        if m.recalled_at != 0 {
            let by = if m.recalled_by == 0 {
                "expired".to_owned()
            } else {
                format!("recalled by {}", self.name(m.recalled_by).await)
            };
            return format!("[#{}] (m{}) {by}", m.conversation_id, m.id);
        }
        let mut line = self.render(m).await;
        if m.edited_at != 0 {
            line.push_str(" (edited)");
        }
        for r in &m.reactions {
            line.push_str(&format!(" {}{}", r.emoji, r.count));
        }
        line
    }
}
