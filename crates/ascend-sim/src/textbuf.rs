//! A fixed-size text buffer for formatting ids, timestamps and urls on the
//! serialisation hot path without `core::fmt` or allocation.

/// Up to `N` bytes of text built from `&str` pieces and digits.
pub(crate) struct TextBuf<const N: usize> {
    bytes: [u8; N],
    len: usize,
    overflow: bool,
}

impl<const N: usize> TextBuf<N> {
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
            overflow: false,
        }
    }

    fn push_bytes(&mut self, b: &[u8]) {
        match self.bytes.get_mut(self.len..self.len + b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                self.len += b.len();
            }
            None => self.overflow = true,
        }
    }

    pub(crate) fn push_str(&mut self, s: &str) -> &mut Self {
        self.push_bytes(s.as_bytes());
        self
    }

    pub(crate) fn push_byte(&mut self, b: u8) -> &mut Self {
        self.push_bytes(&[b]);
        self
    }

    /// `v` in decimal.
    pub(crate) fn push_u64(&mut self, mut v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let mut i = tmp.len();
        loop {
            i -= 1;
            tmp[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.push_bytes(&tmp[i..]);
        self
    }

    /// `v` zero-padded to `width` digits (`v` must fit).
    pub(crate) fn push_padded(&mut self, v: u64, width: usize) -> &mut Self {
        let mut tmp = [b'0'; 20];
        let mut v = v;
        let width = width.min(tmp.len());
        for slot in tmp[..width].iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
        self.push_bytes(&tmp[..width]);
        self
    }

    /// The text, or `None` if it did not fit.
    pub(crate) fn as_str(&self) -> Option<&str> {
        if self.overflow {
            return None;
        }
        std::str::from_utf8(&self.bytes[..self.len]).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_text_and_reports_overflow() {
        let mut b = TextBuf::<16>::new();
        b.push_str("id-")
            .push_u64(0)
            .push_byte(b'/')
            .push_u64(7_000_000_457_903);
        assert_eq!(b.as_str(), None, "19 bytes do not fit in 16");
        let mut b = TextBuf::<32>::new();
        b.push_str("é")
            .push_u64(u64::MAX)
            .push_padded(7, 3)
            .push_padded(2026, 4);
        assert_eq!(b.as_str(), Some("é184467440737095516150072026"));
    }
}
