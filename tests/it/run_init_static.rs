//! The embedded guest init must be a static ELF (no PT_INTERP, no DT_NEEDED:
//! nothing for a loader to find in an arbitrary image) and stay under 1 MiB.

fn u16_at(b: &[u8], o: usize) -> u16 {
    u16::from_le_bytes(b[o..o + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NEEDED: u64 = 1;

#[test]
fn embedded_init_is_static_and_small() {
    let elf = d2v::run::init_binary();
    assert!(elf.len() < 1024 * 1024, "d2v-init is {} bytes", elf.len());
    assert_eq!(&elf[..4], b"\x7fELF");
    assert_eq!(elf[4], 2, "ELFCLASS64");
    assert_eq!(elf[5], 1, "little endian");
    assert_eq!(u16_at(elf, 0x12), 62, "x86-64");
    let phoff = u64_at(elf, 0x20) as usize;
    let phentsize = u16_at(elf, 0x36) as usize;
    let phnum = u16_at(elf, 0x38) as usize;
    assert!(phnum > 0);
    let mut loads = 0;
    for i in 0..phnum {
        let ph = &elf[phoff + i * phentsize..phoff + (i + 1) * phentsize];
        let kind = u32_at(ph, 0);
        assert_ne!(kind, PT_INTERP, "d2v-init asks for a dynamic loader");
        if kind == 1 {
            loads += 1;
        }
        if kind == PT_DYNAMIC {
            let (off, size) = (u64_at(ph, 8) as usize, u64_at(ph, 32) as usize);
            for d in elf[off..off + size].chunks_exact(16) {
                assert_ne!(u64_at(d, 0), DT_NEEDED, "d2v-init needs a shared library");
            }
        }
    }
    assert!(loads > 0, "no PT_LOAD segments");
}
