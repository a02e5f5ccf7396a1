//! The Kubernetes version stamped into a kubelet binary, found while the binary is hashed
//! (one streamed pass, never the whole file in memory, never executing it).
//!
//! Kubernetes builds set the version with the linker:
//! `-X 'k8s.io/component-base/version.gitVersion=v1.31.4'` (hack/lib/version.sh,
//! `kube::version::ldflags`, which also sets the same value in
//! `k8s.io/client-go/pkg/version`). Two places can show it:
//!
//! 1. The build info Go embeds (`-ldflags=...` among the build settings). Official release
//!    binaries are built with `-trimpath`, and then Go leaves `-ldflags` out
//!    (golang/go#52372), so this finds the version only on other builds.
//! 2. The string itself. The linker stores an `-X` value as a symbol of its own in
//!    read-only data, with a NUL after it (cmd/link/internal/ld/data.go `addstrdata`,
//!    through `SymbolBuilder.Addstring`), and rewrites the variable, in writable data, as
//!    a string header: the address of those bytes, then their length. Release binaries are
//!    stripped (`-s -w`), so there is no symbol table to name the variable; instead a
//!    version-shaped, NUL-terminated string in a read-only segment counts only when a
//!    header in a writable segment (later in the file) points exactly at it with exactly
//!    its length. A stray
//!    `v1.2.3` in some text has no such header; a Go string variable of a dependency whose
//!    value looks like a version would, so when two different versions are found, the one
//!    the build set twice (component-base and client-go) wins, and otherwise none does.
//!
//! Fails safe: anything unexpected (not ELF, a position-independent binary whose headers
//! are filled in by relocations at load time, several candidates) yields no version, and
//! nodeproof then behaves as before (both drop-in merges computed, disagreements unknown;
//! `--kubelet-version` overrides).

use std::collections::{BTreeMap, HashSet};

/// Finds the version in a byte stream fed in chunks; see the module comment.
#[derive(Debug, Default)]
pub struct VersionScanner {
    build_info: BuildInfoScanner,
    linker: LinkerStringScanner,
}

impl VersionScanner {
    pub fn feed(&mut self, chunk: &[u8]) {
        self.build_info.feed(chunk);
        self.linker.feed(chunk);
    }

    /// The version, once the whole file has been fed.
    pub fn finish(mut self) -> Option<String> {
        if let Some(v) = self.build_info.found.take() {
            return Some(v);
        }
        self.linker.finish()
    }
}

/// Finds `version.gitVersion=v<version>` in the build info (builds without `-trimpath`).
#[derive(Debug, Default)]
struct BuildInfoScanner {
    tail: Vec<u8>,
    found: Option<String>,
}

impl BuildInfoScanner {
    const MARKER: &'static [u8] = b"version.gitVersion=";
    const MAX_VERSION: usize = 64;

    fn feed(&mut self, chunk: &[u8]) {
        if self.found.is_some() {
            return;
        }
        let keep = Self::MARKER.len() + Self::MAX_VERSION;
        let mut window = std::mem::take(&mut self.tail);
        window.extend_from_slice(chunk);
        let mut from = 0;
        while let Some(at) = memchr::memmem::find(&window[from..], Self::MARKER) {
            let start = from + at + Self::MARKER.len();
            let value: Vec<u8> = window[start..]
                .iter()
                .take(Self::MAX_VERSION)
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+'))
                .copied()
                .collect();
            let complete = start + value.len() < window.len();
            if complete {
                if let Ok(v) = String::from_utf8(value) {
                    if v.starts_with('v') && v[1..].split('.').count() >= 2 {
                        self.found = Some(v);
                        return;
                    }
                }
            } else {
                // The value runs past this chunk: look again with the next one.
                self.tail = window[from + at..].to_vec();
                return;
            }
            from = start;
        }
        let cut = window.len().saturating_sub(keep);
        self.tail = window[cut..].to_vec();
    }
}

/// One loadable segment of an ELF file.
#[derive(Debug, Clone, Copy)]
struct Segment {
    offset: u64,
    filesz: u64,
    vaddr: u64,
    writable: bool,
}

#[derive(Debug, Clone)]
struct Layout {
    little: bool,
    /// 8 for ELF64, 4 for ELF32.
    word: usize,
    segments: Vec<Segment>,
}

impl Layout {
    /// Parses the ELF header and program headers; `Err(true)` means more bytes are needed,
    /// `Err(false)` that this is not an ELF file nodeproof reads.
    fn parse(b: &[u8]) -> Result<Layout, bool> {
        if b.len() < 64 {
            return Err(b.starts_with(&b"\x7fELF"[..b.len().min(4)]));
        }
        if &b[..4] != b"\x7fELF" {
            return Err(false);
        }
        let word = match b[4] {
            1 => 4,
            2 => 8,
            _ => return Err(false),
        };
        let little = match b[5] {
            1 => true,
            2 => false,
            _ => return Err(false),
        };
        let rd = |at: usize, n: usize| read_uint(b, at, n, little);
        let (phoff, phentsize, phnum) = if word == 8 {
            (rd(0x20, 8), rd(0x36, 2), rd(0x38, 2))
        } else {
            (rd(0x1c, 4), rd(0x2a, 2), rd(0x2c, 2))
        };
        let (Some(phoff), Some(phentsize), Some(phnum)) = (phoff, phentsize, phnum) else {
            return Err(false);
        };
        let need = phoff
            .checked_add(phentsize.checked_mul(phnum).ok_or(false)?)
            .ok_or(false)?;
        if need > MAX_HEAD as u64 || (word == 8 && phentsize < 56) || (word == 4 && phentsize < 32)
        {
            return Err(false);
        }
        if (b.len() as u64) < need {
            return Err(true);
        }
        let mut segments = Vec::new();
        for i in 0..phnum {
            let at = (phoff + i * phentsize) as usize;
            let field = |off: usize, n: usize| rd(at + off, n).ok_or(false);
            let p_type = field(0, 4)?;
            if p_type != 1 {
                continue; // PT_LOAD only
            }
            let (flags, offset, vaddr, filesz) = if word == 8 {
                (field(4, 4)?, field(8, 8)?, field(16, 8)?, field(32, 8)?)
            } else {
                (field(24, 4)?, field(4, 4)?, field(8, 4)?, field(16, 4)?)
            };
            segments.push(Segment {
                offset,
                filesz,
                vaddr,
                writable: flags & 2 != 0,
            });
        }
        Ok(Layout {
            little,
            word,
            segments,
        })
    }

    fn segment_at_offset(&self, off: u64) -> Option<&Segment> {
        self.segments
            .iter()
            .find(|s| off >= s.offset && off - s.offset < s.filesz)
    }
}

fn read_uint(b: &[u8], at: usize, n: usize, little: bool) -> Option<u64> {
    let bytes = b.get(at..at.checked_add(n)?)?;
    let mut v: u64 = 0;
    if little {
        for &x in bytes.iter().rev() {
            v = (v << 8) | u64::from(x);
        }
    } else {
        for &x in bytes {
            v = (v << 8) | u64::from(x);
        }
    }
    Some(v)
}

/// The ELF and program headers must be within this many bytes of the start.
const MAX_HEAD: usize = 64 * 1024;
/// The longest version string considered (`v1.31.4-eks-1234abc`, `v1.30.2+k3s1`).
const MAX_VERSION: usize = 64;
/// Bytes kept from one chunk to the next so that a string or a header split by a chunk
/// boundary is seen whole.
const LOOKAHEAD: usize = MAX_VERSION + 16;
/// A bound on what is remembered: the version-shaped strings seen so far.
const MAX_CANDIDATES: usize = 4096;

#[derive(Debug, Default)]
struct LinkerStringScanner {
    /// `None` until the headers are read; `Some(None)` when the file is not ELF.
    layout: Option<Option<Layout>>,
    /// Bytes not yet examined, starting at file offset `carry_at`.
    carry: Vec<u8>,
    carry_at: u64,
    /// NUL-terminated, version-shaped strings in read-only segments: (address, length)
    /// -> the string.
    candidates: BTreeMap<(u64, u64), String>,
    /// Candidates a string header in a writable segment points at, exactly. Read-only
    /// segments come before writable ones in the file (Go's linker and the system linkers
    /// lay them out so), so a header is checked against the candidates already seen; a
    /// binary laid out otherwise yields no version.
    referenced: HashSet<(u64, u64)>,
}

impl LinkerStringScanner {
    fn feed(&mut self, chunk: &[u8]) {
        if matches!(self.layout, Some(None)) {
            return;
        }
        let mut window = std::mem::take(&mut self.carry);
        window.extend_from_slice(chunk);
        if self.layout.is_none() {
            match Layout::parse(&window) {
                Ok(l) => self.layout = Some(Some(l)),
                Err(true) if window.len() < MAX_HEAD => {
                    self.carry = window;
                    return;
                }
                Err(_) => {
                    self.layout = Some(None);
                    return;
                }
            }
        }
        let limit = window.len().saturating_sub(LOOKAHEAD);
        self.examine(&window, limit);
        self.carry_at += limit as u64;
        self.carry = window[limit..].to_vec();
    }

    fn finish(mut self) -> Option<String> {
        if self.layout.is_none() {
            // A file shorter than its headers claim.
            let window = std::mem::take(&mut self.carry);
            self.layout = Some(Layout::parse(&window).ok());
            self.carry = window;
        }
        let window = std::mem::take(&mut self.carry);
        self.examine(&window, window.len());
        let mut found: BTreeMap<&str, usize> = BTreeMap::new();
        for (key, v) in &self.candidates {
            if self.referenced.contains(key) {
                *found.entry(v.as_str()).or_default() += 1;
            }
        }
        match found.len() {
            0 => None,
            1 => found.keys().next().map(|v| v.to_string()),
            _ => {
                let twice: Vec<&str> = found
                    .iter()
                    .filter(|(_, n)| **n >= 2)
                    .map(|(v, _)| *v)
                    .collect();
                match twice.as_slice() {
                    [one] => Some(one.to_string()),
                    _ => None,
                }
            }
        }
    }

    /// Examines the positions `0..limit` of `window` (which starts at `carry_at`); bytes
    /// past `limit` may be read to complete a string or header.
    fn examine(&mut self, window: &[u8], limit: usize) {
        let Some(Some(layout)) = &self.layout else {
            return;
        };
        let base = self.carry_at;
        // Candidates: "v1." ... NUL in a read-only segment.
        let mut from = 0;
        while from < limit {
            let Some(at) = memchr::memmem::find(&window[from..], b"v1.") else {
                break;
            };
            let pos = from + at;
            if pos >= limit {
                break;
            }
            from = pos + 1;
            if self.candidates.len() >= MAX_CANDIDATES {
                break;
            }
            let Some(len) = version_len(&window[pos..]) else {
                continue;
            };
            let off = base + pos as u64;
            let Some(seg) = layout.segment_at_offset(off) else {
                continue;
            };
            if seg.writable {
                continue;
            }
            let addr = seg.vaddr + (off - seg.offset);
            let text = String::from_utf8_lossy(&window[pos..pos + len]).into_owned();
            self.candidates.insert((addr, len as u64), text);
        }
        // Headers: aligned (address, length) words in writable segments.
        let word = layout.word;
        for seg in layout.segments.iter().filter(|s| s.writable) {
            let start = seg.offset.max(base);
            let end = (seg.offset + seg.filesz).min(base + limit as u64);
            if start >= end {
                continue;
            }
            // Align on the virtual address (file offset and address agree modulo the
            // page size, so modulo the word size too).
            let addr0 = seg.vaddr + (start - seg.offset);
            let mis = (addr0 % word as u64) as usize;
            let mut pos = (start - base) as usize + if mis == 0 { 0 } else { word - mis };
            let end = (end - base) as usize;
            while pos < end {
                let (Some(ptr), Some(len)) = (
                    read_uint(window, pos, word, layout.little),
                    read_uint(window, pos + word, word, layout.little),
                ) else {
                    break;
                };
                if (6..=MAX_VERSION as u64).contains(&len)
                    && self.candidates.contains_key(&(ptr, len))
                {
                    self.referenced.insert((ptr, len));
                }
                pos += word;
            }
        }
    }
}

/// The length of a Kubernetes version string at the start of `b` that ends in a NUL:
/// `v1.<minor>.<patch>` then optionally `-` or `+` and build/pre-release text
/// (`v1.32.0-rc.1`, `v1.30.2+k3s1`, `v1.31.2-eks-7f9249a`).
fn version_len(b: &[u8]) -> Option<usize> {
    let rest = b.strip_prefix(b"v1.")?;
    let digits = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
    let minor = digits(rest);
    if !(1..=3).contains(&minor) || rest.get(minor) != Some(&b'.') {
        return None;
    }
    let patch = digits(&rest[minor + 1..]);
    if !(1..=4).contains(&patch) {
        return None;
    }
    let mut len = 3 + minor + 1 + patch;
    match b.get(len) {
        Some(0) => return Some(len),
        Some(b'-' | b'+') => {}
        _ => return None,
    }
    while len < MAX_VERSION {
        match b.get(len)? {
            0 => return Some(len),
            c if c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'+') => len += 1,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(blob: &[u8], chunk: usize) -> Option<String> {
        let mut s = VersionScanner::default();
        for c in blob.chunks(chunk.max(1)) {
            s.feed(c);
        }
        s.finish()
    }

    #[test]
    fn finds_the_build_info_stamp_across_chunk_boundaries() {
        let blob = b"junk build\t-ldflags=\"-X 'k8s.io/component-base/version.gitVersion=v1.31.4' -X x\" more";
        for split in 1..blob.len() {
            let mut s = VersionScanner::default();
            s.feed(&blob[..split]);
            s.feed(&blob[split..]);
            assert_eq!(s.finish().as_deref(), Some("v1.31.4"), "split at {split}");
        }
        assert_eq!(
            scan(b"no version here version.gitVersion= nothing", 7),
            None
        );
    }

    #[test]
    fn version_shapes() {
        assert_eq!(version_len(b"v1.31.4\0"), Some(7));
        assert_eq!(version_len(b"v1.32.0-rc.1\0x"), Some(12));
        assert_eq!(version_len(b"v1.30.2+k3s1\0"), Some(12));
        assert_eq!(version_len(b"v1.31.4clean\0"), None);
        assert_eq!(version_len(b"v1.31.4"), None);
        assert_eq!(version_len(b"v1.31\0"), None);
        assert_eq!(version_len(b"v1.x.4\0"), None);
    }

    /// A minimal ELF64 little-endian file: one read-only and one writable PT_LOAD, with
    /// `rodata` at file offset 0x1000 (address 0x401000) and `data` at 0x2000 (0x602000).
    fn elf(rodata: &[u8], data: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 0x2000 + data.len()];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        f[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        f[0x38..0x3a].copy_from_slice(&2u16.to_le_bytes());
        let ph = |f: &mut Vec<u8>, at: usize, flags: u32, off: u64, vaddr: u64, size: u64| {
            f[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            f[at + 4..at + 8].copy_from_slice(&flags.to_le_bytes());
            f[at + 8..at + 16].copy_from_slice(&off.to_le_bytes());
            f[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            f[at + 32..at + 40].copy_from_slice(&size.to_le_bytes());
        };
        ph(&mut f, 64, 4, 0x1000, 0x401000, 0x1000);
        ph(&mut f, 120, 6, 0x2000, 0x602000, data.len() as u64);
        f[0x1000..0x1000 + rodata.len()].copy_from_slice(rodata);
        f[0x2000..].copy_from_slice(data);
        f
    }

    fn header(addr: u64, len: u64) -> Vec<u8> {
        [addr.to_le_bytes(), len.to_le_bytes()].concat()
    }

    #[test]
    fn a_referenced_nul_terminated_version_is_found_in_any_chunking() {
        // "clean\0v1.31.4\0" at 0x401000: the version at 0x401006, 7 bytes.
        let rodata = b"clean\0v1.31.4\0";
        let mut data = vec![0u8; 8];
        data.extend(header(0x401006, 7));
        let f = elf(rodata, &data);
        for chunk in [1, 7, 64, 100, 4096, 1 << 20] {
            assert_eq!(scan(&f, chunk).as_deref(), Some("v1.31.4"), "chunk {chunk}");
        }
    }

    #[test]
    fn an_unreferenced_or_mislengthed_version_is_not_trusted() {
        let rodata = b"xx v1.29.0\0 yy";
        assert_eq!(scan(&elf(rodata, &header(0x9999, 7)), 4096), None);
        // Pointing at it with the wrong length.
        assert_eq!(scan(&elf(rodata, &header(0x401003, 6)), 4096), None);
        // A header that is not word-aligned.
        let mut data = vec![0u8; 4];
        data.extend(header(0x401003, 7));
        assert_eq!(scan(&elf(rodata, &data), 4096), None);
        assert_eq!(
            scan(&elf(rodata, &header(0x401003, 7)), 4096).as_deref(),
            Some("v1.29.0")
        );
    }

    #[test]
    fn two_different_versions_need_the_doubled_one() {
        // A dependency's "v1.5.2" and Kubernetes' "v1.31.4" set twice (component-base and
        // client-go): the doubled one wins.
        let rodata = b"v1.5.2\0v1.31.4\0v1.31.4\0";
        let data = [
            header(0x401000, 6),
            header(0x401007, 7),
            header(0x40100f, 7),
        ]
        .concat();
        assert_eq!(scan(&elf(rodata, &data), 4096).as_deref(), Some("v1.31.4"));
        // Each once: ambiguous, so none.
        let data = [header(0x401000, 6), header(0x401007, 7)].concat();
        assert_eq!(scan(&elf(rodata, &data), 4096), None);
    }

    #[test]
    fn not_elf_or_truncated_is_none_without_panic() {
        assert_eq!(scan(b"", 10), None);
        assert_eq!(scan(b"\x7fEL", 10), None);
        assert_eq!(scan(b"#!/bin/sh\nexec kubelet v1.31.4\0", 10), None);
        let f = elf(b"v1.31.4\0", &header(0x401000, 7));
        for cut in [10, 64, 100, 0x1004, 0x2008] {
            assert_eq!(scan(&f[..cut], 4096), None, "cut at {cut}");
        }
        // Hostile program headers: a huge count is refused, not allocated.
        let mut bad = f.clone();
        bad[0x38..0x3a].copy_from_slice(&u16::MAX.to_le_bytes());
        assert_eq!(scan(&bad, 4096), None);
    }
}
