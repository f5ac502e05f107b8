//! `SharedEvent`: an event encoded at most once per wire format and shared by
//! all of its recipients.

use bytes::Bytes;
use im_protocol::{Format, codec, v1};
use std::sync::{Arc, OnceLock};

/// A server event, encoded lazily once per format; cloning the `Arc` is all a
/// recipient costs.
#[derive(Debug)]
pub struct SharedEvent {
    frame: v1::ServerFrame,
    binary: OnceLock<Bytes>,
    json: OnceLock<Bytes>,
}

impl SharedEvent {
    /// Wraps an event.
    pub fn new(kind: v1::event::Kind) -> Arc<Self> {
        Arc::new(Self {
            frame: v1::ServerFrame::event(kind),
            binary: OnceLock::new(),
            json: OnceLock::new(),
        })
    }

    /// The frame.
    pub fn frame(&self) -> &v1::ServerFrame {
        &self.frame
    }

    /// The event inside the frame.
    pub fn kind(&self) -> Option<&v1::event::Kind> {
        match &self.frame.body {
            Some(v1::server_frame::Body::Event(e)) => e.kind.as_ref(),
            _ => None,
        }
    }

    /// The encoded frame (encoded on first use, then shared).
    pub fn encoded(&self, format: Format) -> Bytes {
        let cell = match format {
            Format::Binary => &self.binary,
            Format::Json => &self.json,
        };
        cell.get_or_init(|| codec::encode(&self.frame, format)).clone()
    }
}
