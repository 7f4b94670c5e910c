//! The counting program, as BPF instructions written out by hand (as
//! systemd's IP accounting does): no compiler, no object file, and the
//! kernel's verifier checks it at load. Pure: it only encodes.
//!
//! One program per direction, attached to a cgroup as `cgroup_skb`. For
//! each packet a full inet socket sends or receives, it adds the packet's
//! length (L3: no Ethernet header) and one packet to its socket's cgroup's
//! counters, and always lets the packet through. Where those counters are:
//! - a cgroup user space has given a slot (every cgroup it has seen, while
//!   slots last) counts in that slot of an array user space maps into its
//!   memory, so a scrape reads every count with plain loads and no call;
//! - any other cgroup (one created since user space last looked) counts in
//!   a hash map by cgroup id, its entry created at zero by the first packet,
//!   which also adds one to the array's slot 0; user space takes those
//!   entries over when it next looks. Where that map is full, the packet
//!   is counted as uncounted, in slot 0 too.
//!
//! Both directions share the maps, each adding at its own offset in an
//! entry.

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
const JA: u8 = 0x05; // JMP | JA
const MOV64_REG: u8 = 0xbf; // ALU64 | MOV | X
const MOV64_IMM: u8 = 0xb7; // ALU64 | MOV | K
const ADD64_IMM: u8 = 0x07; // ALU64 | ADD | K
const CALL: u8 = 0x85; // JMP | CALL
const EXIT: u8 = 0x95; // JMP | EXIT
const JNE_IMM: u8 = 0x55; // JMP | JNE | K
const JEQ_IMM: u8 = 0x15; // JMP | JEQ | K
const STX_DW: u8 = 0x7b; // STX | MEM | DW
const ST_DW: u8 = 0x7a; // ST | MEM | DW
const STX_W: u8 = 0x63; // STX | MEM | W
const ST_W: u8 = 0x62; // ST | MEM | W
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

/// A counters entry (a slot, or a new cgroup's entry): received bytes and
/// packets, then sent bytes and packets. Slot 0 holds how many new cgroups
/// the programs have met, then how many packets they could not count.
pub const VALUE_SIZE: usize = 32;
/// Where each direction adds in an entry.
pub const INGRESS: i16 = 0;
pub const EGRESS: i16 = 16;
/// A cgroup id.
pub const KEY_SIZE: usize = 8;
/// A slot's number, the value of the slots map.
pub const SLOT_SIZE: usize = 4;

/// The three maps a program uses, by file descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maps {
    /// Hash: cgroup id to its slot (u32).
    pub slots: i32,
    /// Mappable array of counters, by slot.
    pub counters: i32,
    /// Hash: cgroup id to counters, for cgroups with no slot.
    pub fresh: i32,
}

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

/// Where a forward jump goes, patched once the program is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Label {
    Fresh,
    Again,
    Full,
    Add,
    Allow,
}

/// The program that counts into `maps`, at `offset` of each entry
/// ([`INGRESS`] or [`EGRESS`]).
pub fn counter(maps: Maps, offset: i16) -> Vec<Insn> {
    let mut p: Vec<Insn> = Vec::with_capacity(56);
    let mut jumps: Vec<(usize, Label)> = Vec::new();
    let mut labels: Vec<(Label, usize)> = Vec::new();
    let jump = |p: &mut Vec<Insn>, jumps: &mut Vec<(usize, Label)>, i: Insn, to: Label| {
        jumps.push((p.len(), to));
        p.push(i);
    };
    // r0 = lookup(map, fp + key).
    let lookup = |p: &mut Vec<Insn>, map: i32, key: i32| {
        p.extend(load_map(R1, map));
        p.push(insn(MOV64_REG, R2, R10, 0, 0));
        p.push(insn(ADD64_IMM, R2, 0, 0, key));
        p.push(insn(CALL, 0, 0, 0, MAP_LOOKUP_ELEM));
    };

    // Keep the packet (the context) across calls, which clobber r1-r5.
    p.push(insn(MOV64_REG, R6, R1, 0, 0));
    // r0 = the cgroup id of the packet's socket; the key, at fp-8.
    p.push(insn(CALL, 0, 0, 0, SKB_CGROUP_ID));
    p.push(insn(STX_DW, R10, R0, -8, 0));
    // The cgroup's slot, if it has one.
    lookup(&mut p, maps.slots, -8);
    jump(&mut p, &mut jumps, insn(JEQ_IMM, R0, 0, 0, 0), Label::Fresh);
    // r0 = &counters[slot] (the slot number, a u32 key at fp-16).
    p.push(insn(LDX_W, R1, R0, 0, 0));
    p.push(insn(STX_W, R10, R1, -16, 0));
    lookup(&mut p, maps.counters, -16);
    // Only past the array's end, which user space never hands out.
    jump(&mut p, &mut jumps, insn(JEQ_IMM, R0, 0, 0, 0), Label::Allow);
    jump(&mut p, &mut jumps, insn(JA, 0, 0, 0, 0), Label::Add);

    // fresh: no slot. Its entry in the fresh map, if there is one yet.
    labels.push((Label::Fresh, p.len()));
    lookup(&mut p, maps.fresh, -8);
    jump(&mut p, &mut jumps, insn(JNE_IMM, R0, 0, 0, 0), Label::Add);
    // None: a zeroed entry at fp-48..fp-16, inserted unless another CPU did
    // first (or the map is full).
    for at in [-48, -40, -32, -24] {
        p.push(insn(ST_DW, R10, 0, at, 0));
    }
    p.extend(load_map(R1, maps.fresh));
    p.push(insn(MOV64_REG, R2, R10, 0, 0));
    p.push(insn(ADD64_IMM, R2, 0, 0, -8));
    p.push(insn(MOV64_REG, R3, R10, 0, 0));
    p.push(insn(ADD64_IMM, R3, 0, 0, -48));
    p.push(insn(MOV64_IMM, R4, 0, 0, NOEXIST));
    p.push(insn(CALL, 0, 0, 0, MAP_UPDATE_ELEM));
    jump(&mut p, &mut jumps, insn(JNE_IMM, R0, 0, 0, 0), Label::Again);
    // Inserted: one more new cgroup, counted in slot 0 for user space to see.
    p.push(insn(ST_W, R10, 0, -16, 0));
    lookup(&mut p, maps.counters, -16);
    jump(&mut p, &mut jumps, insn(JEQ_IMM, R0, 0, 0, 0), Label::Again);
    p.push(insn(MOV64_IMM, R1, 0, 0, 1));
    p.push(insn(ATOMIC_ADD_DW, R0, R1, 0, 0));
    // again: the entry, whoever inserted it.
    labels.push((Label::Again, p.len()));
    lookup(&mut p, maps.fresh, -8);
    jump(&mut p, &mut jumps, insn(JNE_IMM, R0, 0, 0, 0), Label::Add);
    // full: still none, the map is full. One packet uncounted, in slot 0.
    labels.push((Label::Full, p.len()));
    p.push(insn(ST_W, R10, 0, -16, 0));
    lookup(&mut p, maps.counters, -16);
    jump(&mut p, &mut jumps, insn(JEQ_IMM, R0, 0, 0, 0), Label::Allow);
    p.push(insn(MOV64_IMM, R1, 0, 0, 1));
    p.push(insn(ATOMIC_ADD_DW, R0, R1, 8, 0));
    jump(&mut p, &mut jumps, insn(JA, 0, 0, 0, 0), Label::Allow);

    // add: entry.bytes += skb->len; entry.packets += 1, atomically, as
    // several CPUs may count one cgroup at once.
    labels.push((Label::Add, p.len()));
    p.push(insn(LDX_W, R1, R6, SKB_LEN, 0));
    p.push(insn(ATOMIC_ADD_DW, R0, R1, offset, 0));
    p.push(insn(MOV64_IMM, R1, 0, 0, 1));
    p.push(insn(ATOMIC_ADD_DW, R0, R1, offset + 8, 0));
    // allow: return 1, the packet goes on.
    labels.push((Label::Allow, p.len()));
    p.push(insn(MOV64_IMM, R0, 0, 0, 1));
    p.push(insn(EXIT, 0, 0, 0, 0));

    // Jumps count from the instruction after them.
    for (at, to) in jumps {
        let target = labels
            .iter()
            .find(|(l, _)| *l == to)
            .map_or(at + 1, |&(_, i)| i);
        p[at].off = (target - at - 1) as i16;
    }
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

    const MAPS: Maps = Maps {
        slots: 7,
        counters: 8,
        fresh: 9,
    };

    #[test]
    fn jumps_land_where_their_comments_say() {
        let p = counter(MAPS, EGRESS);
        let target = |i: usize| i + 1 + p[i].off as usize;
        let jumps: Vec<usize> = (0..p.len())
            .filter(|&i| [JA, JEQ_IMM, JNE_IMM].contains(&p[i].code))
            .collect();
        let allow = p.len() - 2;
        assert_eq!(p[allow], insn(MOV64_IMM, R0, 0, 0, 1));
        assert_eq!(p[allow + 1].code, EXIT);
        let add = p
            .iter()
            .position(|i| i.code == LDX_W && i.src == R6)
            .unwrap();
        for &j in &jumps {
            assert!(
                target(j) > j && target(j) <= allow,
                "jump {j} forward, inside"
            );
        }
        // No slot: to the fresh map, which the next lookup reads.
        let fresh = target(jumps[0]);
        assert_eq!(p[fresh].imm, MAPS.fresh, "{:?}", p[fresh]);
        assert_eq!(target(jumps[1]), allow, "no counters: allow");
        assert_eq!(target(jumps[2]), add, "the slot's counters: add");
        assert_eq!(target(jumps[3]), add, "a fresh entry: add");
        // Inserted by another CPU, or counted as new: look again.
        let again = target(jumps[4]);
        assert_eq!(target(jumps[5]), again);
        assert_eq!(p[again].imm, MAPS.fresh);
        assert_eq!(target(jumps[6]), add, "found this time: add");
        // Full: one uncounted packet in slot 0's second field, then allow.
        let full = jumps[6] + 1;
        assert_eq!(p[full].code, ST_W);
        assert_eq!(p[full + 1].imm, MAPS.counters);
        assert_eq!(target(jumps[7]), allow);
        assert_eq!(target(jumps[8]), allow);
        assert_eq!(p[jumps[8] - 1].off, 8, "slot 0's uncounted packets");
        assert_eq!(jumps.len(), 9);
    }

    #[test]
    fn each_map_is_loaded_where_it_is_used() {
        let p = counter(MAPS, EGRESS);
        let loads = |fd: i32| {
            p.iter()
                .filter(|i| i.code == LD_IMM64 && i.src == PSEUDO_MAP_FD && i.imm == fd)
                .count()
        };
        assert_eq!(loads(MAPS.slots), 1);
        assert_eq!(loads(MAPS.counters), 3, "the slot, and slot 0 twice");
        assert_eq!(loads(MAPS.fresh), 3, "look, insert, look again");
        assert_eq!(bytes(&p).len(), p.len() * 8);
        let adds: Vec<_> = p
            .iter()
            .filter(|i| i.code == ATOMIC_ADD_DW)
            .map(|i| i.off)
            .collect();
        assert_eq!(
            adds,
            [0, 8, 16, 24],
            "new cgroups, uncounted packets, sent bytes and packets"
        );
    }
}
