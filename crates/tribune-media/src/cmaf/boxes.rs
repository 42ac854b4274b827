//! A minimal ISO BMFF box writer: size-prefixed boxes and full boxes (version + flags), nested
//! by patching each box's size when it is closed.

use super::CmafError;

/// Writes nested boxes into one buffer.
///
/// Sizes are patched in [`BoxWriter::end`]; a box that would exceed the 32-bit size field is
/// recorded and reported by [`BoxWriter::finish`], so no caller has to handle it per call.
#[derive(Debug, Default)]
pub(crate) struct BoxWriter {
    buf: Vec<u8>,
    /// Start offsets of the boxes still open, innermost last.
    open: Vec<usize>,
    too_large: bool,
}

impl BoxWriter {
    /// An empty writer with room for `capacity` bytes.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        BoxWriter {
            buf: Vec::with_capacity(capacity),
            open: Vec::new(),
            too_large: false,
        }
    }

    /// Opens a plain box of type `kind`.
    pub(crate) fn begin(&mut self, kind: &[u8; 4]) -> &mut Self {
        self.open.push(self.buf.len());
        // The size is a placeholder until `end` knows it.
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(kind);
        self
    }

    /// Opens a full box: a plain box followed by an 8-bit version and 24-bit flags.
    pub(crate) fn begin_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> &mut Self {
        self.begin(kind);
        self.u32((u32::from(version) << 24) | (flags & 0x00ff_ffff))
    }

    /// Closes the innermost open box, writing its size.
    pub(crate) fn end(&mut self) -> &mut Self {
        if let Some(start) = self.open.pop() {
            let size = self.buf.len() - start;
            match u32::try_from(size) {
                Ok(size) => self.buf[start..start + 4].copy_from_slice(&size.to_be_bytes()),
                Err(_) => self.too_large = true,
            }
        }
        self
    }

    /// Current length of the output, used to compute offsets such as `trun.data_offset`.
    pub(crate) fn len(&self) -> usize {
        self.buf.len()
    }

    /// Overwrites 4 bytes at `at` with a big-endian value written earlier as a placeholder.
    pub(crate) fn patch_u32(&mut self, at: usize, value: u32) {
        if let Some(slot) = self.buf.get_mut(at..at + 4) {
            slot.copy_from_slice(&value.to_be_bytes());
        }
    }

    pub(crate) fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }

    pub(crate) fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn i16(&mut self, v: i16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    pub(crate) fn u64(&mut self, v: u64) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }

    /// Appends `n` zero bytes (reserved and pre-defined fields).
    pub(crate) fn zeros(&mut self, n: usize) -> &mut Self {
        self.buf.resize(self.buf.len() + n, 0);
        self
    }

    pub(crate) fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(b);
        self
    }

    /// Returns the bytes of a structure that cannot fail (fixed, small boxes, all closed).
    pub(crate) fn into_inner(self) -> Vec<u8> {
        debug_assert!(self.open.is_empty() && !self.too_large);
        self.buf
    }

    /// Returns the bytes once every box is closed and every size fitted in 32 bits.
    pub(crate) fn finish(self) -> Result<Vec<u8>, CmafError> {
        if self.too_large {
            return Err(CmafError::TooLarge("box larger than 4 GiB"));
        }
        if !self.open.is_empty() {
            return Err(CmafError::Internal("unclosed box"));
        }
        Ok(self.buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_boxes_get_their_sizes() {
        let mut w = BoxWriter::default();
        w.begin(b"moov");
        w.begin_full(b"mvhd", 1, 0x0102_0304).u8(7).end();
        w.end();
        let out = w.finish().unwrap();
        assert_eq!(
            out,
            [
                0, 0, 0, 21, b'm', b'o', b'o', b'v', // outer: 8 + 13
                0, 0, 0, 13, b'm', b'v', b'h', b'd', // inner: 8 + 4 + 1
                1, 0x02, 0x03, 0x04, // version 1, flags truncated to 24 bits
                7,
            ]
        );
    }

    #[test]
    fn an_unclosed_box_is_an_error() {
        let mut w = BoxWriter::default();
        w.begin(b"moof");
        assert!(matches!(w.finish(), Err(CmafError::Internal(_))));
    }

    #[test]
    fn patching_out_of_range_is_ignored() {
        let mut w = BoxWriter::default();
        w.u32(0);
        w.patch_u32(2, 9);
        w.patch_u32(0, 0x0a0b_0c0d);
        assert_eq!(w.finish().unwrap(), [0x0a, 0x0b, 0x0c, 0x0d]);
    }
}
