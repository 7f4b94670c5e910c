//! A program section of a compiled BPF object (clang's ELF), ready to
//! load: its instructions, with each map load pointed at a map user space
//! made. Pure: it reads bytes and patches a copy.
//!
//! Only what our own object holds is accepted: code sections whose only
//! relocations are 64-bit loads of a map declared in `.maps` (clang's
//! `R_BPF_64_64` on an `LD_IMM64`). Anything else (a call to another
//! function, a global variable, a map user space does not know) is an
//! error, never a guess.

use std::os::fd::RawFd;

use object::{Object, ObjectSection, ObjectSymbol, RelocationFlags, RelocationTarget};

/// `BPF_LD | BPF_IMM | BPF_DW`: a 64-bit immediate, two instruction slots.
const LD_IMM64: u8 = 0x18;
/// Its `src` when the immediate is a map's file descriptor.
const PSEUDO_MAP_FD: u8 = 1;
const INSN: usize = 8;
/// Where clang puts maps declared `SEC(".maps")`.
const MAPS_SECTION: &str = ".maps";

#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF object: {0}")]
    Parse(#[from] object::Error),
    #[error("not a BPF object for this machine: {0}")]
    Machine(&'static str),
    #[error("the BPF object has no section {0:?}")]
    NoSection(String),
    #[error("section {section:?}: {why}")]
    Code { section: String, why: &'static str },
    #[error("section {section:?}: the relocation at byte {offset} {why}")]
    Relocation {
        section: String,
        offset: u64,
        why: String,
    },
    #[error("section {section:?}: no map named {symbol:?} to load at byte {offset}")]
    UnknownMap {
        section: String,
        symbol: String,
        offset: usize,
    },
}

/// A program section as compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    /// The instructions, 8 bytes each, map loads unpatched.
    pub code: Vec<u8>,
    /// Each map load: its byte offset in `code`, and the map's name.
    pub maps: Vec<(usize, String)>,
}

/// Section `section` of `object`, its relocations checked.
pub fn program(object: &[u8], section: &str) -> Result<Program, ElfError> {
    let file = object::File::parse(object)?;
    if file.architecture() != object::Architecture::Bpf {
        return Err(ElfError::Machine("not BPF"));
    }
    if file.is_little_endian() != cfg!(target_endian = "little") {
        return Err(ElfError::Machine("the other byte order"));
    }
    let text = file
        .section_by_name(section)
        .ok_or_else(|| ElfError::NoSection(section.to_owned()))?;
    let code_error = |why| ElfError::Code {
        section: section.to_owned(),
        why,
    };
    if text.kind() != object::SectionKind::Text {
        return Err(code_error("not code"));
    }
    let code = text.data().map_err(|_| code_error("unreadable"))?.to_vec();
    if code.is_empty() || code.len() % INSN != 0 {
        return Err(code_error("not whole instructions"));
    }
    let mut maps = Vec::new();
    for (offset, reloc) in text.relocations() {
        let fail = |why: String| ElfError::Relocation {
            section: section.to_owned(),
            offset,
            why,
        };
        if !matches!(reloc.flags(), RelocationFlags::Elf { r_type } if r_type == object::elf::R_BPF_64_64)
        {
            return Err(fail(format!("is not a 64-bit load ({:?})", reloc.flags())));
        }
        let RelocationTarget::Symbol(index) = reloc.target() else {
            return Err(fail("names no symbol".to_owned()));
        };
        let symbol = file
            .symbol_by_index(index)
            .map_err(|e| fail(format!("names a bad symbol: {e}")))?;
        let name = symbol
            .name()
            .map_err(|e| fail(format!("names a bad symbol: {e}")))?;
        let in_maps = symbol
            .section_index()
            .and_then(|i| file.section_by_index(i).ok())
            .is_some_and(|s| s.name() == Ok(MAPS_SECTION));
        if !in_maps || name.is_empty() {
            return Err(fail(format!("is to {name:?}, not a map in {MAPS_SECTION}")));
        }
        let at = usize::try_from(offset)
            .ok()
            .filter(|&at| at % INSN == 0 && at + 2 * INSN <= code.len())
            .ok_or_else(|| fail("is not at a whole instruction".to_owned()))?;
        if code[at] != LD_IMM64 {
            return Err(fail(format!(
                "is at opcode {:#04x}, not LD_IMM64",
                code[at]
            )));
        }
        // An addend would point into the map's declaration, not at a map.
        if code[at + 4..at + 8] != [0; 4] {
            return Err(fail("has an addend".to_owned()));
        }
        maps.push((at, name.to_owned()));
    }
    maps.sort();
    Ok(Program { code, maps })
}

/// Section `section` of `object` as `BPF_PROG_LOAD` takes it: each map
/// load's immediate is the fd `map_fd` gives for the map's name.
pub fn patched(
    object: &[u8],
    section: &str,
    map_fd: impl Fn(&str) -> Option<RawFd>,
) -> Result<Vec<u8>, ElfError> {
    let Program { mut code, maps } = program(object, section)?;
    for (at, name) in maps {
        let fd = map_fd(&name).ok_or_else(|| ElfError::UnknownMap {
            section: section.to_owned(),
            symbol: name.clone(),
            offset: at,
        })?;
        // The registers' byte: dst in the low nibble on little-endian
        // machines, the high one on big-endian.
        code[at + 1] = if cfg!(target_endian = "little") {
            (code[at + 1] & 0x0f) | (PSEUDO_MAP_FD << 4)
        } else {
            (code[at + 1] & 0xf0) | PSEUDO_MAP_FD
        };
        code[at + 4..at + 8].copy_from_slice(&fd.to_ne_bytes());
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use super::super::peers::{EGRESS, INGRESS, MAP_NAMES, OBJECT};
    use super::*;

    fn fds(name: &str) -> Option<RawFd> {
        MAP_NAMES
            .iter()
            .position(|&n| n == name)
            .map(|i| 100 + i as RawFd)
    }

    #[test]
    fn both_sections_load_with_every_map_patched_by_name() {
        for section in [INGRESS, EGRESS] {
            let program = program(OBJECT, section).unwrap();
            let code = patched(OBJECT, section, fds).unwrap();
            assert_eq!(code.len(), program.code.len());
            let mut seen = Vec::new();
            for at in (0..code.len()).step_by(INSN) {
                if code[at] != LD_IMM64 {
                    continue;
                }
                let src = if cfg!(target_endian = "little") {
                    code[at + 1] >> 4
                } else {
                    code[at + 1] & 0x0f
                };
                let imm = i32::from_ne_bytes(code[at + 4..at + 8].try_into().unwrap());
                // Every 64-bit load in this program is a map's.
                assert_eq!(src, PSEUDO_MAP_FD, "{section} at {at}");
                let name = &program.maps.iter().find(|(a, _)| *a == at).unwrap().1;
                assert_eq!(Some(imm), fds(name), "{section} at {at}: {name}");
                seen.push(name.clone());
            }
            assert_eq!(seen.len(), program.maps.len());
            for name in MAP_NAMES {
                assert!(seen.iter().any(|s| s == name), "{section} loads {name}");
            }
            // Nothing but the map loads changed.
            let mut unpatched = code.clone();
            for (at, _) in &program.maps {
                unpatched[at + 1] = program.code[at + 1];
                unpatched[at + 4..at + 8].copy_from_slice(&program.code[at + 4..at + 8]);
            }
            assert_eq!(unpatched, program.code);
        }
    }

    #[test]
    fn a_map_nobody_made_is_an_error() {
        let only_cfg = |name: &str| (name == "tne_peer_cfg").then_some(3);
        let err = patched(OBJECT, INGRESS, only_cfg).unwrap_err();
        assert!(matches!(err, ElfError::UnknownMap { .. }), "{err}");
        let text = err.to_string();
        assert!(MAP_NAMES[1..].iter().any(|n| text.contains(n)), "{err}");
    }

    #[test]
    fn garbage_and_missing_sections_are_errors() {
        for bytes in [&b""[..], b"\x7fELF garbage", &[0u8; 64], &OBJECT[..100]] {
            assert!(program(bytes, INGRESS).is_err());
        }
        // Cut short anywhere, or any byte changed: an answer, never a panic.
        for n in 0..OBJECT.len() {
            assert!(program(&OBJECT[..n], INGRESS).is_err(), "cut at {n}");
            let mut changed = OBJECT.to_vec();
            changed[n] ^= 0xa5;
            let _ = patched(&changed, EGRESS, fds);
        }
        let err = program(OBJECT, "cgroup_skb/nowhere").unwrap_err();
        assert!(matches!(err, ElfError::NoSection(_)), "{err}");
        let err = program(OBJECT, ".maps").unwrap_err();
        assert!(err.to_string().contains("not code"), "{err}");
    }

    #[test]
    fn a_relocation_to_anything_but_a_map_is_an_error() {
        // The object with `.maps` renamed: its symbols are no longer maps.
        let mut renamed = OBJECT.to_vec();
        let at = renamed
            .windows(6)
            .position(|w| w == b".maps\0")
            .expect("the section's name");
        renamed[at + 1] = b'x';
        let err = program(&renamed, INGRESS).unwrap_err();
        assert!(
            matches!(err, ElfError::Relocation { .. }) && err.to_string().contains("not a map"),
            "{err}"
        );
    }
}
