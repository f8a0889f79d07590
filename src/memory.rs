//! Handing back memory that ONNX Runtime only needs while it starts.
//!
//! Creating the ONNX Runtime environment and a session runs through much of
//! the library's 27 MB of code (operator schemas, every kernel registration,
//! the graph optimisers), and the kernel maps 64 KB around every page touched.
//! Inference afterwards needs a small part of it. Those pages are clean copies
//! of the library file, so the process can drop them from its resident set
//! and fault back the few it uses from the page cache. Measured on one
//! `filesrc ! decodebin ! audioconvert ! seremotion ! fakesink` pipeline:
//! ONNX Runtime's resident code goes from 17.5 MB to 6.4 MB and the
//! pipeline's peak RSS from 44.7 MB to about 36 MB (README, "Memory").

/// One mapping of a file in this process, from `/proc/self/smaps`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub end: usize,
    pub writable: bool,
    pub path: String,
    /// Resident kB.
    pub rss_kb: u64,
    /// Privately modified (copy-on-write) kB: pages that exist nowhere else.
    pub anonymous_kb: u64,
}

/// Parses the text of `/proc/PID/smaps`; mappings without a path are skipped.
pub fn parse_smaps(text: &str) -> Vec<Mapping> {
    let mut out: Vec<Mapping> = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in text.lines() {
        if let Some(header) = parse_header(line) {
            out.extend(current.take());
            current = header;
            continue;
        }
        let (Some(mapping), Some((key, value))) = (current.as_mut(), line.split_once(':')) else {
            continue;
        };
        let kb = || value.split_whitespace().next().and_then(|v| v.parse().ok());
        match key {
            "Rss" => mapping.rss_kb = kb().unwrap_or(0),
            "Anonymous" => mapping.anonymous_kb = kb().unwrap_or(0),
            _ => (),
        }
    }
    out.extend(current);
    out
}

/// A header line is `start-end perms offset device inode [path]`: `Some` of
/// the mapping if it has a path, `Some(None)` if not, `None` for other lines.
fn parse_header(line: &str) -> Option<Option<Mapping>> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let writable = fields.next()?.contains('w');
    // Skip offset, device and inode; the path may hold spaces.
    let path = fields.skip(3).collect::<Vec<_>>().join(" ");
    Some(path.starts_with('/').then_some(Mapping {
        start,
        end,
        writable,
        path,
        rss_kb: 0,
        anonymous_kb: 0,
    }))
}

/// This process's mappings of files whose name contains `name`.
#[cfg(target_os = "linux")]
pub fn mappings_of(name: &str) -> Vec<Mapping> {
    std::fs::read_to_string("/proc/self/smaps")
        .map(|text| parse_smaps(&text))
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            std::path::Path::new(&m.path)
                .file_name()
                .is_some_and(|f| f.to_string_lossy().contains(name))
        })
        .collect()
}

/// Part of the ONNX Runtime library's file name, whichever copy was loaded.
pub const RUNTIME_LIBRARY_NAME: &str = "libonnxruntime";

/// Drops ONNX Runtime's resident code and read-only data pages, and returns
/// freed heap pages to the system. Called after the environment and after
/// each session is built, so start-up work does not stay resident.
pub fn release_runtime_start_up_pages() {
    #[cfg(target_os = "linux")]
    for mapping in mappings_of(RUNTIME_LIBRARY_NAME) {
        // Only read-only mappings without private copies: every page there is
        // identical to the file and comes back on the next touch. Written
        // pages (relocations, data) are private and must never be discarded.
        if mapping.writable || mapping.anonymous_kb != 0 || mapping.rss_kb == 0 {
            continue;
        }
        // SAFETY: the range is a whole mapping taken from /proc/self/smaps,
        // read-only and unmodified, so MADV_DONTNEED only unmaps clean file
        // pages; the kernel refaults identical contents on access, also for a
        // thread running this code right now. Failure (e.g. a mapping that has
        // just gone) leaves the pages where they were.
        unsafe {
            libc::madvise(
                mapping.start as *mut libc::c_void,
                mapping.end - mapping.start,
                libc::MADV_DONTNEED,
            );
        }
    }
    // Graph building frees several MB of temporaries in holes glibc keeps.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free heap pages; no pointer changes.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
7f72cfa00000-7f72cfadd000 r--p 00000000 fe:00 10264623 /lib/libonnxruntime.so.1.32.0
Size:                884 kB
Rss:                 884 kB
Anonymous:             0 kB
7f72d1adc000-7f72d1b30000 r--p 020db000 fe:00 10264623 /lib/libonnxruntime.so.1.32.0
Rss:                 336 kB
Anonymous:           336 kB
7f72d1b30000-7f72d1b37000 rw-p 0212f000 fe:00 10264623 /lib/libonnxruntime.so.1.32.0
Rss:                  28 kB
Anonymous:            12 kB
55d0c0000000-55d0c0021000 rw-p 00000000 00:00 0 [heap]
Rss:                 132 kB
Anonymous:           132 kB
7f72d2000000-7f72d2001000 r--p 00000000 fe:00 77 /tmp/a file with spaces
Rss:                   4 kB
Anonymous:             0 kB
";

    #[test]
    fn smaps_mappings_keep_permissions_sizes_and_paths() {
        let maps = parse_smaps(SMAPS);
        assert_eq!(maps.len(), 4, "{maps:?}");
        assert_eq!(
            maps[0],
            Mapping {
                start: 0x7f72cfa00000,
                end: 0x7f72cfadd000,
                writable: false,
                path: "/lib/libonnxruntime.so.1.32.0".into(),
                rss_kb: 884,
                anonymous_kb: 0,
            }
        );
        // The relocated read-only segment has private pages: not discardable.
        assert_eq!((maps[1].writable, maps[1].anonymous_kb), (false, 336));
        assert!(maps[2].writable);
        assert_eq!(maps[3].path, "/tmp/a file with spaces");
        assert_eq!(maps[3].rss_kb, 4);
    }
}
