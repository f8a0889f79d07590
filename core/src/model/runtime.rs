//! Finding and loading the ONNX Runtime shared library.

use std::path::{Path, PathBuf};

use once_cell::sync::OnceCell;

use super::ModelError;

/// File name of the ONNX Runtime shared library inside the `onnxruntime` 1.32 wheel.
pub const ORT_LIBRARY_FILE: &str = "libonnxruntime.so.1.32.0";

/// Places to look for the ONNX Runtime library, most specific first.
pub fn runtime_candidates() -> Vec<PathBuf> {
    // An explicit choice is the only candidate: falling back elsewhere would hide a typo.
    if let Some(path) = std::env::var_os("SEREMOTION_ORT_LIB").filter(|p| !p.is_empty()) {
        return vec![PathBuf::from(path)];
    }
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    // Baked in by scripts/setup.sh (the project's virtualenv), so that an
    // installed plugin finds the library without any variable exported.
    if let Some(path) = option_env!("SEREMOTION_ORT_LIB_DEFAULT").filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(path));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(
            Path::new(&home)
                .join(".local/lib/seremotion")
                .join(ORT_LIBRARY_FILE),
        );
    }
    // Let the dynamic loader search its usual paths last.
    candidates.push(PathBuf::from(ORT_LIBRARY_FILE));
    candidates.push(PathBuf::from("libonnxruntime.so.1"));
    candidates.push(PathBuf::from("libonnxruntime.so"));
    candidates
}

/// The process-wide ONNX Runtime environment, loaded on first use.
///
/// `ort` panics if a session is built before a library was loaded, so every
/// path into ONNX Runtime goes through here first. Success is kept for the
/// life of the process (ONNX Runtime cannot be unloaded); a failure is not, so
/// a library installed after a first failed attempt is found by the next one.
///
/// Telemetry is switched off through the API only: the library is loaded into
/// someone else's process, whose environment is not ours to change. ONNX
/// Runtime 1.32 on Linux still starts its uploader thread unless
/// `ORT_DISABLE_TELEMETRY=1` is in the environment when it loads; the README
/// tells users to set it.
pub fn runtime() -> Result<&'static ort::environment::Environment, ModelError> {
    static RUNTIME: OnceCell<ort::environment::Environment> = OnceCell::new();
    RUNTIME.get_or_try_init(load_runtime)
}

fn load_runtime() -> Result<ort::environment::Environment, ModelError> {
    let mut tried = Vec::new();
    let mut cause = String::from("no candidate");
    for candidate in runtime_candidates() {
        if candidate.is_absolute() && !candidate.exists() {
            tried.push(format!("{} (absent)", candidate.display()));
            continue;
        }
        tried.push(candidate.display().to_string());
        if candidate.is_absolute() {
            // dlopen of a truncated file maps pages past its end, and the
            // first touch of one is a SIGBUS that kills the host process.
            check_shared_library(&candidate).map_err(|problem| ModelError::RuntimeUnusable {
                path: candidate.clone(),
                problem,
            })?;
        }
        match ort::init_from(&candidate) {
            Ok(builder) => {
                return builder
                    .with_name("seremotion")
                    .with_telemetry(false)
                    .build()
                    .map_err(|e| ModelError::RuntimeNotFound {
                        tried,
                        cause: format!("{e:?}"),
                    });
            }
            Err(e @ ort::LoadDynamicError::BadVersion { .. }) => {
                return Err(ModelError::RuntimeUnusable {
                    path: candidate,
                    problem: e.to_string(),
                });
            }
            // The Display of this error hides the loader's message.
            Err(e) => cause = format!("{e:?}"),
        }
    }
    Err(ModelError::RuntimeNotFound { tried, cause })
}

/// Checks that `path` is a complete ELF shared object: the header, the
/// program headers and every loadable segment lie inside the file.
pub(crate) fn check_shared_library(path: &Path) -> Result<(), String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    let mut header = [0u8; 64];
    file.read_exact(&mut header)
        .map_err(|_| format!("{len} bytes is too short for a shared library"))?;
    let elf = ElfLayout::parse(&header)?;
    let table_len = u64::from(elf.ph_entry_size) * u64::from(elf.ph_count);
    let table_end = elf.ph_offset.checked_add(table_len);
    if table_end.is_none_or(|end| end > len) {
        return Err(format!(
            "the file is truncated ({len} bytes; its program headers end past it)"
        ));
    }
    let mut table = vec![0u8; table_len as usize];
    file.seek(SeekFrom::Start(elf.ph_offset))
        .and_then(|_| file.read_exact(&mut table))
        .map_err(|e| e.to_string())?;
    for entry in table.chunks_exact(usize::from(elf.ph_entry_size)) {
        if let Some(end) = elf.loadable_segment_end(entry)
            && end > len
        {
            return Err(format!(
                "the file is truncated ({len} bytes; a segment ends at byte {end})"
            ));
        }
    }
    Ok(())
}

/// The fields of an ELF header needed to find the loadable segments.
struct ElfLayout {
    is_64: bool,
    little_endian: bool,
    ph_offset: u64,
    ph_entry_size: u16,
    ph_count: u16,
}

impl ElfLayout {
    const PT_LOAD: u32 = 1;

    fn parse(header: &[u8; 64]) -> Result<Self, String> {
        if header[..4] != *b"\x7fELF" {
            return Err("it is not an ELF shared library".into());
        }
        let is_64 = match header[4] {
            1 => false,
            2 => true,
            other => return Err(format!("unknown ELF class {other}")),
        };
        let little_endian = header[5] == 1;
        let mut layout = Self {
            is_64,
            little_endian,
            ph_offset: 0,
            ph_entry_size: 0,
            ph_count: 0,
        };
        let (ph_offset, entry_size_at) = if is_64 {
            (layout.u64_at(header, 32), 54)
        } else {
            (u64::from(layout.u32_at(header, 28)), 42)
        };
        layout.ph_offset = ph_offset;
        layout.ph_entry_size = layout.u16_at(header, entry_size_at);
        layout.ph_count = layout.u16_at(header, entry_size_at + 2);
        let minimum = if is_64 { 56 } else { 32 };
        if layout.ph_count > 0 && usize::from(layout.ph_entry_size) < minimum {
            return Err(format!(
                "program header entries of {} bytes",
                layout.ph_entry_size
            ));
        }
        Ok(layout)
    }

    /// Where a PT_LOAD entry's file contents end, `None` for other entries.
    fn loadable_segment_end(&self, entry: &[u8]) -> Option<u64> {
        if self.u32_at(entry, 0) != Self::PT_LOAD {
            return None;
        }
        let (offset, size) = if self.is_64 {
            (self.u64_at(entry, 8), self.u64_at(entry, 32))
        } else {
            (
                u64::from(self.u32_at(entry, 4)),
                u64::from(self.u32_at(entry, 16)),
            )
        };
        Some(offset.saturating_add(size))
    }

    fn u16_at(&self, bytes: &[u8], at: usize) -> u16 {
        let raw = [bytes[at], bytes[at + 1]];
        if self.little_endian {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        }
    }

    fn u32_at(&self, bytes: &[u8], at: usize) -> u32 {
        let raw: [u8; 4] = bytes[at..at + 4].try_into().expect("4 bytes");
        if self.little_endian {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        }
    }

    fn u64_at(&self, bytes: &[u8], at: usize) -> u64 {
        let raw: [u8; 8] = bytes[at..at + 8].try_into().expect("8 bytes");
        if self.little_endian {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("seremotion-{}-{name}", std::process::id()));
        std::fs::write(&path, bytes).expect("write temp file");
        path
    }

    /// A library that exists on every Linux machine this builds on.
    fn some_shared_library() -> Option<PathBuf> {
        [
            "/lib/x86_64-linux-gnu/libc.so.6",
            "/lib/aarch64-linux-gnu/libc.so.6",
            "/lib64/libc.so.6",
        ]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
    }

    #[test]
    fn a_complete_library_passes_and_a_truncated_copy_is_refused() {
        let Some(lib) = some_shared_library() else {
            panic!("no libc.so.6 found to test with");
        };
        check_shared_library(&lib).expect("libc is a complete shared library");
        let bytes = std::fs::read(&lib).expect("read libc");
        let truncated = temp_file("truncated.so", &bytes[..bytes.len() / 2]);
        let err = check_shared_library(&truncated).unwrap_err();
        let _ = std::fs::remove_file(&truncated);
        assert!(err.contains("truncated"), "{err}");
    }

    #[test]
    fn files_that_are_not_libraries_are_refused() {
        let text = temp_file(
            "text.so",
            b"this is not a library, just some text to fill 64 bytes of header room",
        );
        let empty = temp_file("empty.so", b"");
        let text_err = check_shared_library(&text).unwrap_err();
        let empty_err = check_shared_library(&empty).unwrap_err();
        let _ = std::fs::remove_file(&text);
        let _ = std::fs::remove_file(&empty);
        assert!(text_err.contains("not an ELF"), "{text_err}");
        assert!(empty_err.contains("too short"), "{empty_err}");
    }
}
