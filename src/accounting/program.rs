//! The counting program, as BPF instructions written out by hand (as
//! systemd's IP accounting does): no compiler, no object file, and the
//! kernel's verifier checks it at load. Pure: it only encodes.
//!
//! One program per direction, attached to a cgroup as `cgroup_skb`. For
//! each packet a full inet socket sends or receives, it adds the packet's
//! length (L3: no Ethernet header) and one packet to the entry of the
//! socket's cgroup id in a hash map, creating the entry at zero first. Both
//! directions share the map, each adding at its own offset in the entry, so
//! a scrape reads one map (a read walks every bucket, full or not). It
//! always lets the packet through.

/// One `struct bpf_insn`: opcode, the two registers in one byte (dst in the
/// low nibble), a 16-bit offset and a 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads, in the machine's byte order.
    pub fn encode(&self) -> [u8; 8] {
        let mut out = [0u8; 8];
        out[0] = self.code;
        out[1] = (self.dst & 0x0f) | (self.src << 4);
        out[2..4].copy_from_slice(&self.off.to_ne_bytes());
        out[4..8].copy_from_slice(&self.imm.to_ne_bytes());
        out
    }
}

// Registers: r0 return value, r1-r5 arguments, r6 callee-saved, r10 the
// read-only frame pointer.
const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R10: u8 = 10;

// Opcodes (class | operation | source).
const MOV64_REG: u8 = 0xbf; // ALU64 | MOV | X
const MOV64_IMM: u8 = 0xb7; // ALU64 | MOV | K
const ADD64_IMM: u8 = 0x07; // ALU64 | ADD | K
const CALL: u8 = 0x85; // JMP | CALL
const EXIT: u8 = 0x95; // JMP | EXIT
const JNE_IMM: u8 = 0x55; // JMP | JNE | K
const JEQ_IMM: u8 = 0x15; // JMP | JEQ | K
const STX_DW: u8 = 0x7b; // STX | MEM | DW
const ST_DW: u8 = 0x7a; // ST | MEM | DW
const LDX_W: u8 = 0x61; // LDX | MEM | W
const LD_IMM64: u8 = 0x18; // LD | IMM | DW, two instructions
const ATOMIC_ADD_DW: u8 = 0xdb; // STX | ATOMIC | DW, imm = BPF_ADD
/// `src` of a 64-bit load whose immediate is a map's file descriptor.
const PSEUDO_MAP_FD: u8 = 1;

// Helpers, by their number in the kernel's list.
const MAP_LOOKUP_ELEM: i32 = 1;
const MAP_UPDATE_ELEM: i32 = 2;
const SKB_CGROUP_ID: i32 = 79;
/// `map_update_elem`'s flag: only if the key is not there yet.
const NOEXIST: i32 = 1;

/// `__sk_buff.len`'s offset.
const SKB_LEN: i16 = 0;

/// A map entry, as the user side reads it: received bytes and packets,
/// then sent bytes and packets.
pub const VALUE_SIZE: usize = 32;
/// Where each direction adds in an entry.
pub const INGRESS: i16 = 0;
pub const EGRESS: i16 = 16;
pub const KEY_SIZE: usize = 8;

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// `dst = map` (the map's fd, which the kernel swaps for the map).
fn load_map(dst: u8, map_fd: i32) -> [Insn; 2] {
    [
        insn(LD_IMM64, dst, PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
    ]
}

/// The program that counts into the map `map_fd`, at `offset` of each
/// entry ([`INGRESS`] or [`EGRESS`]).
pub fn counter(map_fd: i32, offset: i16) -> Vec<Insn> {
    let mut p = Vec::with_capacity(34);
    // Keep the packet (the context) across calls, which clobber r1-r5.
    p.push(insn(MOV64_REG, R6, R1, 0, 0));
    // r0 = the cgroup id of the packet's socket.
    p.push(insn(CALL, 0, 0, 0, SKB_CGROUP_ID));
    // The key lives on the stack at fp-8.
    p.push(insn(STX_DW, R10, R0, -8, 0));
    // r0 = lookup(map, &key).
    let lookup = |p: &mut Vec<Insn>| {
        p.extend(load_map(R1, map_fd));
        p.push(insn(MOV64_REG, R2, R10, 0, 0));
        p.push(insn(ADD64_IMM, R2, 0, 0, -8));
        p.push(insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM));
    };
    lookup(&mut p);
    // Found: go add (the jump's offset is patched below).
    let found = p.len();
    p.push(insn(JNE_IMM, R0, 0, 0, 0));
    // Not found: a zeroed entry at fp-40..fp-8, inserted unless another CPU
    // did it first, then looked up again.
    for at in [-40, -32, -24, -16] {
        p.push(insn(ST_DW, R10, 0, at, 0));
    }
    p.extend(load_map(R1, map_fd));
    p.push(insn(MOV64_REG, R2, R10, 0, 0));
    p.push(insn(ADD64_IMM, R2, 0, 0, -8));
    p.push(insn(MOV64_REG, R3, R10, 0, 0));
    p.push(insn(ADD64_IMM, R3, 0, 0, -40));
    p.push(insn(MOV64_IMM, R4, 0, 0, NOEXIST));
    p.push(insn(CALL, 0, 0, 0, MAP_UPDATE_ELEM));
    lookup(&mut p);
    // Still none (the map is full): count nothing.
    let full = p.len();
    p.push(insn(JEQ_IMM, R0, 0, 0, 0));
    // add: entry.bytes += skb->len; entry.packets += 1, atomically, as
    // several CPUs may count one cgroup at once.
    let add = p.len();
    p.push(insn(LDX_W, R1, R6, SKB_LEN, 0));
    p.push(insn(ATOMIC_ADD_DW, R0, R1, offset, 0));
    p.push(insn(MOV64_IMM, R1, 0, 0, 1));
    p.push(insn(ATOMIC_ADD_DW, R0, R1, offset + 8, 0));
    // allow: return 1, the packet goes on.
    let allow = p.len();
    p.push(insn(MOV64_IMM, R0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));
    // Jumps count from the instruction after them.
    p[found].off = (add - found - 1) as i16;
    p[full].off = (allow - full - 1) as i16;
    p
}

/// The program as the bytes `BPF_PROG_LOAD` takes.
pub fn bytes(program: &[Insn]) -> Vec<u8> {
    program.iter().flat_map(Insn::encode).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_share_a_byte_dst_low() {
        let i = insn(STX_DW, R10, R0, -8, 0).encode();
        assert_eq!(i[0], 0x7b);
        assert_eq!(i[1], 0x0a);
        assert_eq!(i16::from_ne_bytes([i[2], i[3]]), -8);
        let load = load_map(R1, 42);
        assert_eq!(load[0].encode()[1], 0x11, "r1, pseudo map fd");
        assert_eq!(load[0].imm, 42);
        assert_eq!(load[1].encode(), [0; 8]);
    }

    #[test]
    fn jumps_land_on_add_and_allow() {
        let p = counter(7, EGRESS);
        let target = |i: usize| i + 1 + p[i].off as usize;
        let found = p.iter().position(|i| i.code == JNE_IMM).unwrap();
        assert_eq!(p[target(found)].code, LDX_W, "found: add");
        let full = p.iter().position(|i| i.code == JEQ_IMM).unwrap();
        assert_eq!(p[target(full)], insn(MOV64_IMM, R0, 0, 0, 1), "full: allow");
        assert_eq!(p.last().unwrap().code, EXIT);
        assert_eq!(
            p.iter()
                .filter(|i| i.code == LD_IMM64 && i.imm == 7)
                .count(),
            3,
            "each map use loads the map"
        );
        assert_eq!(bytes(&p).len(), p.len() * 8);
        let adds: Vec<_> = p
            .iter()
            .filter(|i| i.code == ATOMIC_ADD_DW)
            .map(|i| i.off)
            .collect();
        assert_eq!(adds, [16, 24], "sent bytes and packets");
    }
}
