//! In-flight inspection of image data.
//!
//! An [`Inspector`] sees every byte of an upload as it streams past, keeping
//! only the few regions it needs (the first 64 KiB, a VMDK descriptor, the
//! VHDX region and metadata tables, the last 512 bytes). From them it
//! detects the real format of the data (qcow2, vmdk, vhd, vhdx, vdi, iso or
//! raw), refuses data that does not match the declared `disk_format`, refuses
//! images that would make a consumer open other files (a qcow2 backing file
//! or external data file, a differencing VHD/VHDX/VDI, a VMDK that is not a
//! single sparse file), and computes `virtual_size`. It reports a problem as
//! soon as the bytes that show it have arrived, so that a bad upload is cut
//! off early rather than stored first.

mod formats;

pub use formats::Format;

/// How far into the data the first look goes (covers the ISO 9660 primary
/// volume descriptor at 32 KiB).
pub const HEAD_LEN: u64 = 64 * 1024;
/// Largest region captured beyond the head (a VMDK descriptor, VHDX tables).
const MAX_CAPTURE: u64 = 1 << 20;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InspectError {
    /// The data is not in the declared format.
    #[error("Image disk_format {declared} does not match the uploaded data ({found})")]
    Mismatch { declared: String, found: String },
    /// The data is in the declared format but refers outside itself or uses
    /// features that are refused.
    #[error("Image failed safety checks: {0}")]
    Unsafe(String),
    /// The data claims a format but its structures are broken or truncated.
    #[error("Image format inspection failed: {0}")]
    Invalid(String),
}

/// What inspection concluded about a complete upload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outcome {
    /// The format detected in the data.
    pub format: Format,
    /// Size of the disk the image represents, in bytes.
    pub virtual_size: Option<u64>,
}

/// Rules an upload is checked against.
#[derive(Clone, Debug)]
pub struct Rules {
    /// The image's `disk_format` (empty: only detect the format; the
    /// safety checks still apply).
    pub declared: String,
    /// Refuse data whose format does not match `declared`.
    pub require_match: bool,
    /// Accepted VMDK `createType`s.
    pub vmdk_allowed: Vec<String>,
}

/// A region of the stream to keep.
#[derive(Debug)]
pub(crate) struct Capture {
    pub offset: u64,
    pub want: u64,
    pub buf: Vec<u8>,
}

impl Capture {
    fn new(offset: u64, want: u64) -> Capture {
        Capture {
            offset,
            want,
            buf: Vec::with_capacity(want.min(MAX_CAPTURE) as usize),
        }
    }

    pub fn done(&self) -> bool {
        self.buf.len() as u64 >= self.want
    }

    fn end(&self) -> u64 {
        self.offset.saturating_add(self.want)
    }

    /// Copies the part of `chunk` (which starts at `pos`) that falls in this
    /// region and has not been copied yet.
    fn feed(&mut self, pos: u64, chunk: &[u8]) {
        let have = self.offset.saturating_add(self.buf.len() as u64);
        if self.done() || pos + chunk.len() as u64 <= have || pos > have {
            return;
        }
        let start = (have - pos) as usize;
        let take = ((self.end() - have) as usize).min(chunk.len() - start);
        self.buf.extend_from_slice(&chunk[start..start + take]);
    }
}

/// Streams through an upload; see the module documentation.
pub struct Inspector {
    rules: Rules,
    pos: u64,
    head: Capture,
    tail: Vec<u8>,
    detected: Option<formats::State>,
}

impl Inspector {
    pub fn new(rules: Rules) -> Inspector {
        Inspector {
            rules,
            pos: 0,
            head: Capture::new(0, HEAD_LEN),
            tail: Vec::with_capacity(512),
            detected: None,
        }
    }

    /// Bytes seen so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Feeds the next bytes of the stream. An error means the upload must be
    /// refused; feeding more after an error is not meaningful.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Result<(), InspectError> {
        while !chunk.is_empty() {
            // Stop at the next point where a region completes, so that a
            // region found there (say, a table that a header points to) can
            // still be captured from the bytes that follow.
            let boundary = self.next_boundary();
            let n = match boundary {
                Some(b) if b > self.pos => ((b - self.pos) as usize).min(chunk.len()),
                _ => chunk.len(),
            };
            let (piece, rest) = chunk.split_at(n);
            self.head.feed(self.pos, piece);
            if let Some(st) = &mut self.detected {
                st.feed(self.pos, piece);
            }
            self.keep_tail(piece);
            self.pos += piece.len() as u64;
            chunk = rest;
            if self.detected.is_none() && self.head.done() {
                self.detect()?;
            }
            if let Some(st) = &mut self.detected {
                st.progress(self.pos, &self.head, &self.rules)?;
            }
        }
        Ok(())
    }

    /// Concludes on the complete stream.
    pub fn finish(mut self) -> Result<Outcome, InspectError> {
        if self.detected.is_none() {
            self.detect()?;
        }
        let Some(mut st) = self.detected.take() else {
            return Err(InspectError::Invalid("nothing to inspect".into()));
        };
        st.progress(self.pos, &self.head, &self.rules)?;
        let (format, virtual_size) = st.finish(self.pos, &self.tail)?;
        decide(&self.rules, format)?;
        let virtual_size = if self.rules.declared == format.name() {
            virtual_size
        } else {
            // Accepted under another name (an ISO or fixed VHD uploaded as
            // raw, say): the disk is the bytes themselves.
            Some(self.pos)
        };
        Ok(Outcome {
            format,
            virtual_size,
        })
    }

    fn next_boundary(&self) -> Option<u64> {
        let mut b = None;
        if self.detected.is_none() {
            b = Some(HEAD_LEN);
        }
        if let Some(st) = &self.detected {
            if let Some(e) = st.next_end(self.pos) {
                b = Some(b.map_or(e, |x: u64| x.min(e)));
            }
        }
        b
    }

    fn keep_tail(&mut self, piece: &[u8]) {
        if piece.len() >= 512 {
            self.tail.clear();
            self.tail.extend_from_slice(&piece[piece.len() - 512..]);
        } else {
            self.tail.extend_from_slice(piece);
            if self.tail.len() > 512 {
                let excess = self.tail.len() - 512;
                self.tail.drain(..excess);
            }
        }
    }

    /// Looks at the head: which format, and is it acceptable so far.
    fn detect(&mut self) -> Result<(), InspectError> {
        let st = formats::State::detect(&self.head.buf, self.pos, &self.rules)?;
        let format = st.format();
        // A mismatch that the rest of the stream cannot change is reported
        // now; only raw data can still turn out to be a fixed VHD.
        if !(format == Format::Raw && self.rules.declared == "vhd") {
            decide(&self.rules, format)?;
        }
        self.detected = Some(st);
        Ok(())
    }
}

/// Whether data of `found` format may be stored as `rules.declared`.
fn decide(rules: &Rules, found: Format) -> Result<(), InspectError> {
    let declared = rules.declared.as_str();
    let ok = match declared {
        // Detection only: nothing was declared.
        "" => true,
        d if d == found.name() => true,
        // An ISO is a raw image of a disc; a fixed VHD is raw data followed
        // by a footer. Container formats stored as raw would be booted as
        // their container bytes.
        "raw" => matches!(found, Format::Raw | Format::Iso | Format::VhdFixed),
        "vhd" => found == Format::VhdFixed,
        "qcow2" | "vmdk" | "vhdx" | "vdi" | "iso" => false,
        // Formats nothing here can inspect (ami, ari, aki, ploop): accepted
        // unless the data is recognisably something else.
        _ => matches!(found, Format::Raw | Format::Iso),
    };
    if ok {
        return Ok(());
    }
    if !rules.require_match {
        tracing::warn!(
            declared,
            found = found.name(),
            "image data does not match its disk_format (allowed by configuration)"
        );
        return Ok(());
    }
    Err(InspectError::Mismatch {
        declared: declared.to_string(),
        found: found.name().to_string(),
    })
}

#[cfg(test)]
mod tests;
