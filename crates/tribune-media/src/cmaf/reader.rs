//! Test-only ISO BMFF reader: parses a byte string into a box tree, checking that every size is
//! consistent with its parent, so tests can assert on real field values.

/// One parsed box.
#[derive(Debug)]
pub(crate) struct Box<'a> {
    /// Four-character type.
    pub kind: [u8; 4],
    /// Total size including the header.
    pub size: usize,
    /// Offset of the box in the parsed buffer.
    pub offset: usize,
    /// Payload after the 8-byte header (including any full-box version and flags).
    pub body: &'a [u8],
    /// Child boxes, for the container types this reader knows.
    pub children: Vec<Box<'a>>,
}

/// Bytes of fields before the first child, for each container type.
fn child_offset(kind: &[u8; 4]) -> Option<usize> {
    match kind {
        b"moov" | b"trak" | b"mdia" | b"minf" | b"dinf" | b"stbl" | b"mvex" | b"moof" | b"traf" => {
            Some(0)
        }
        b"stsd" | b"dref" => Some(8),
        b"Opus" => Some(28),
        _ => None,
    }
}

/// Parses consecutive boxes filling `bytes` exactly.
pub(crate) fn parse(bytes: &[u8]) -> Result<Vec<Box<'_>>, String> {
    parse_at(bytes, 0)
}

fn parse_at(bytes: &[u8], base: usize) -> Result<Vec<Box<'_>>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let header = bytes
            .get(pos..pos + 8)
            .ok_or_else(|| format!("truncated header at {}", base + pos))?;
        let size = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = [header[4], header[5], header[6], header[7]];
        if size < 8 || pos + size > bytes.len() {
            return Err(format!(
                "box {} at {} has size {size}, {} bytes left",
                String::from_utf8_lossy(&kind),
                base + pos,
                bytes.len() - pos
            ));
        }
        let body = &bytes[pos + 8..pos + size];
        let children = match child_offset(&kind) {
            Some(skip) if body.len() >= skip => parse_at(&body[skip..], base + pos + 8 + skip)?,
            Some(_) => return Err(format!("{} too short", String::from_utf8_lossy(&kind))),
            None => Vec::new(),
        };
        out.push(Box {
            kind,
            size,
            offset: base + pos,
            body,
            children,
        });
        pos += size;
    }
    Ok(out)
}

impl<'a> Box<'a> {
    /// The type as text.
    pub fn kind_str(&self) -> &str {
        std::str::from_utf8(&self.kind).unwrap_or("????")
    }

    /// Follows a path of child types (first match at each level).
    pub fn find(&self, path: &[&str]) -> Option<&Box<'a>> {
        let (first, rest) = path.split_first()?;
        let child = self.children.iter().find(|c| c.kind_str() == *first)?;
        if rest.is_empty() {
            Some(child)
        } else {
            child.find(rest)
        }
    }

    /// Big-endian u16 at `at` in the body.
    pub fn u16_at(&self, at: usize) -> u16 {
        u16::from_be_bytes([self.body[at], self.body[at + 1]])
    }

    /// Big-endian u32 at `at` in the body.
    pub fn u32_at(&self, at: usize) -> u32 {
        let b = &self.body[at..at + 4];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }

    /// Big-endian u64 at `at` in the body.
    pub fn u64_at(&self, at: usize) -> u64 {
        let mut b = [0; 8];
        b.copy_from_slice(&self.body[at..at + 8]);
        u64::from_be_bytes(b)
    }
}

/// Facts about one `moof` + `mdat` fragment, for assertions.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct FragmentInfo {
    /// `mfhd.sequence_number`.
    pub sequence_number: u32,
    /// `tfdt.baseMediaDecodeTime`.
    pub decode_time: u64,
    /// `tfhd.default_sample_duration`.
    pub sample_duration: u32,
    /// Sample sizes from `trun`.
    pub sizes: Vec<u32>,
    /// The samples, located through `trun.data_offset` relative to the `moof` start.
    pub samples: Vec<Vec<u8>>,
}

/// Parses one or more fragments (`moof` + `mdat` pairs), checking offsets and lengths.
pub(crate) fn fragments(bytes: &[u8]) -> Result<Vec<FragmentInfo>, String> {
    let boxes = parse(bytes)?;
    if boxes.len() % 2 != 0 {
        return Err(format!(
            "{} top-level boxes, expected moof/mdat pairs",
            boxes.len()
        ));
    }
    boxes
        .chunks(2)
        .map(|pair| fragment(bytes, &pair[0], &pair[1]))
        .collect()
}

fn fragment(bytes: &[u8], moof: &Box<'_>, mdat: &Box<'_>) -> Result<FragmentInfo, String> {
    if moof.kind_str() != "moof" || mdat.kind_str() != "mdat" {
        return Err(format!("got {} + {}", moof.kind_str(), mdat.kind_str()));
    }
    let mfhd = moof.find(&["mfhd"]).ok_or("no mfhd")?;
    let tfhd = moof.find(&["traf", "tfhd"]).ok_or("no tfhd")?;
    let tfdt = moof.find(&["traf", "tfdt"]).ok_or("no tfdt")?;
    let trun = moof.find(&["traf", "trun"]).ok_or("no trun")?;
    if tfhd.u32_at(0) != 0x0002_0008 {
        return Err(format!("tfhd flags {:#x}", tfhd.u32_at(0)));
    }
    if tfdt.body[0] != 1 {
        return Err("tfdt is not version 1".into());
    }
    if trun.u32_at(0) != 0x0000_0201 {
        return Err(format!("trun flags {:#x}", trun.u32_at(0)));
    }
    let count = trun.u32_at(4) as usize;
    let data_offset = trun.u32_at(8) as usize;
    let sizes: Vec<u32> = (0..count).map(|i| trun.u32_at(12 + 4 * i)).collect();
    if trun.body.len() != 12 + 4 * count {
        return Err("trun length does not match its sample count".into());
    }
    let total: usize = sizes.iter().map(|&s| s as usize).sum();
    if mdat.body.len() != total {
        return Err(format!(
            "mdat holds {} bytes, trun {}",
            mdat.body.len(),
            total
        ));
    }
    if moof.offset + data_offset != mdat.offset + 8 {
        return Err("data_offset does not point at the mdat payload".into());
    }
    let mut samples = Vec::new();
    let mut at = moof.offset + data_offset;
    for &s in &sizes {
        samples.push(bytes[at..at + s as usize].to_vec());
        at += s as usize;
    }
    Ok(FragmentInfo {
        sequence_number: mfhd.u32_at(4),
        decode_time: tfdt.u64_at(4),
        sample_duration: tfhd.u32_at(8),
        sizes,
        samples,
    })
}
