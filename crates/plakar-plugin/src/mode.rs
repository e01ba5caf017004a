//! Go `io/fs.FileMode` bits, which is what `FileInfo.mode` carries (not POSIX `st_mode`).

/// `fs.ModeDir`.
pub const MODE_DIR: u32 = 1 << 31;
/// `fs.ModeSymlink`.
pub const MODE_SYMLINK: u32 = 1 << 27;
/// `fs.ModeDevice`.
pub const MODE_DEVICE: u32 = 1 << 26;
/// `fs.ModeNamedPipe`.
pub const MODE_NAMED_PIPE: u32 = 1 << 25;
/// `fs.ModeSocket`.
pub const MODE_SOCKET: u32 = 1 << 24;
/// `fs.ModeSetuid`.
pub const MODE_SETUID: u32 = 1 << 23;
/// `fs.ModeSetgid`.
pub const MODE_SETGID: u32 = 1 << 22;
/// `fs.ModeCharDevice`.
pub const MODE_CHAR_DEVICE: u32 = 1 << 21;
/// `fs.ModeSticky`.
pub const MODE_STICKY: u32 = 1 << 20;
/// `fs.ModeIrregular`.
pub const MODE_IRREGULAR: u32 = 1 << 19;
/// `fs.ModeType`: the bits that make an entry something other than a regular file.
pub const MODE_TYPE: u32 =
    MODE_DIR | MODE_SYMLINK | MODE_NAMED_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR_DEVICE | MODE_IRREGULAR;

/// What kind of entry a Go mode describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GoKind {
    /// `mode & ModeType == 0` (mode 0 included).
    Regular,
    /// `ModeDir`.
    Directory,
    /// `ModeSymlink`.
    Symlink,
    /// Devices, pipes, sockets, irregular files.
    Other,
}

/// Classifies a Go mode as the host does.
pub fn kind(mode: u32) -> GoKind {
    if mode & MODE_TYPE == 0 {
        GoKind::Regular
    } else if mode & MODE_DIR != 0 {
        GoKind::Directory
    } else if mode & MODE_SYMLINK != 0 {
        GoKind::Symlink
    } else {
        GoKind::Other
    }
}

/// POSIX permission bits (`0o7777`: setuid/setgid/sticky and `rwx`) to Go permission bits.
pub fn from_posix_perm(perm: u32) -> u32 {
    let mut m = perm & 0o777;
    if perm & 0o4000 != 0 {
        m |= MODE_SETUID;
    }
    if perm & 0o2000 != 0 {
        m |= MODE_SETGID;
    }
    if perm & 0o1000 != 0 {
        m |= MODE_STICKY;
    }
    m
}

/// Go permission bits back to POSIX `0o7777` bits (the type bits are dropped).
pub fn to_posix_perm(mode: u32) -> u32 {
    let mut m = mode & 0o777;
    if mode & MODE_SETUID != 0 {
        m |= 0o4000;
    }
    if mode & MODE_SETGID != 0 {
        m |= 0o2000;
    }
    if mode & MODE_STICKY != 0 {
        m |= 0o1000;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn examples_from_the_contract() {
        assert_eq!(kind(0o644), GoKind::Regular);
        assert_eq!(kind(0), GoKind::Regular);
        assert_eq!(kind(0x8000_0000 | 0o755), GoKind::Directory);
        assert_eq!(kind(0x0800_0000 | 0o777), GoKind::Symlink);
        assert_eq!(kind(MODE_NAMED_PIPE | 0o600), GoKind::Other);
        // POSIX S_IFDIR is not a directory to Go.
        assert_eq!(kind(0o040_755), GoKind::Regular);
    }

    #[test]
    fn special_bits_round_trip() {
        for perm in [0o4755, 0o2750, 0o1777, 0o600, 0o7777] {
            assert_eq!(to_posix_perm(from_posix_perm(perm)), perm);
        }
        assert_eq!(from_posix_perm(0o4700), MODE_SETUID | 0o700);
        assert_eq!(from_posix_perm(0o1777), MODE_STICKY | 0o777);
    }
}
