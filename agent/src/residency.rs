//! Hands back the file pages start-up touched. Loading configuration, opening the state
//! database, compiling or loading components and models run code that serving events never
//! runs again, and the kernel maps every file page in 64 KiB windows around each fault, so
//! after start-up most of the binary and of LiteRT stays mapped (`BENCHMARKS.md`,
//! "Footprint"). Once fogd is ready it asks the kernel to page out its read-only file
//! mappings (`MADV_PAGEOUT`, Linux ≥ 5.4); what events need comes back on first use. Pages
//! another process also maps are left alone by the kernel.

use std::ops::Range;

/// What a release did: resident set before and after, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Released {
    pub mappings: usize,
    pub resident_before_kib: u64,
    pub resident_after_kib: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ResidencyError {
    #[error("cannot read /proc/self/{file}: {source}")]
    Proc {
        file: &'static str,
        source: std::io::Error,
    },
    #[error("the kernel cannot page out on request (MADV_PAGEOUT needs Linux 5.4 or later)")]
    Unsupported,
    #[error("cannot page out {len} bytes at {start:#x}: {source}")]
    Advise {
        start: usize,
        len: usize,
        source: std::io::Error,
    },
}

/// Hands the allocator's free memory back to the kernel. glibc keeps memory freed in the
/// middle of its heaps (a drained queue of small events leaves thousands of free chunks
/// between live ones) until asked; `malloc_trim` releases every free page in every arena.
/// Returns the resident set before and after, in KiB; elsewhere than glibc it does nothing.
pub fn trim_heap() -> Option<(u64, u64)> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let before = resident_kib().ok()?;
        // SAFETY: malloc_trim only walks the allocator's own free lists; it is thread-safe.
        unsafe { libc::malloc_trim(0) };
        let after = resident_kib().ok()?;
        Some((before, after))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}

/// Pages out every read-only mapping of a file (code, read-only data, mapped models and
/// compiled components) of this process.
pub fn release_file_pages() -> Result<Released, ResidencyError> {
    let resident_before_kib = resident_kib()?;
    let maps = read_proc("maps")?;
    let ranges = read_only_file_mappings(&maps);
    for range in &ranges {
        page_out(range.clone())?;
    }
    Ok(Released {
        mappings: ranges.len(),
        resident_before_kib,
        resident_after_kib: resident_kib()?,
    })
}

fn read_proc(file: &'static str) -> Result<String, ResidencyError> {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .map_err(|source| ResidencyError::Proc { file, source })
}

fn resident_kib() -> Result<u64, ResidencyError> {
    let status = read_proc("status")?;
    Ok(status_field_kib(&status, "VmRSS:").unwrap_or(0))
}

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|line| line.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Address ranges of the private, non-writable mappings of files in `/proc/self/maps`
/// (`r--p`, `r-xp`). Writable mappings hold copied-on-write pages that only swap could
/// take; anonymous, shared-memory and deleted mappings have no file to read back from.
fn read_only_file_mappings(maps: &str) -> Vec<Range<usize>> {
    maps.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addresses = fields.next()?;
            let permissions = fields.next()?;
            let path = fields.nth(3)?;
            let suffix = fields.next();
            if !matches!(permissions, "r--p" | "r-xp") || !path.starts_with('/') || suffix.is_some()
            {
                return None;
            }
            let (start, end) = addresses.split_once('-')?;
            let start = usize::from_str_radix(start, 16).ok()?;
            let end = usize::from_str_radix(end, 16).ok()?;
            (start < end).then_some(start..end)
        })
        .collect()
}

fn page_out(range: Range<usize>) -> Result<(), ResidencyError> {
    let len = range.end - range.start;
    // SAFETY: MADV_PAGEOUT never changes what the range reads: clean file pages fault back
    // in from the file, and private copies (relocated read-only data) go to swap or stay.
    let status =
        unsafe { libc::madvise(range.start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
    if status == 0 {
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    match source.raw_os_error() {
        Some(libc::EINVAL) => Err(ResidencyError::Unsupported),
        _ => Err(ResidencyError::Advise {
            start: range.start,
            len,
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::AsRawFd;

    use super::*;

    const PAGE: usize = 4096;

    #[test]
    fn only_private_read_only_file_mappings_are_released() {
        let maps = "\
55d0c0000000-55d0c0100000 r--p 00000000 fd:01 131 /usr/bin/fogd
55d0c0100000-55d0c0400000 r-xp 00100000 fd:01 131 /usr/bin/fogd
55d0c0400000-55d0c0410000 rw-p 00400000 fd:01 131 /usr/bin/fogd
55d0c1000000-55d0c1200000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 r--s 00000000 fd:01 200 /var/lib/fogd/shared
7f0000100000-7f0000200000 r-xp 00000000 00:01 9 /memfd:wasm (deleted)
7f0000200000-7f0000300000 r--p 00000000 fd:01 201 /var/lib/fogd/cache/echo.cwasm
7f0000300000-7f0000400000 ---p 00000000 00:00 0
7ffd00000000-7ffd00001000 r-xp 00000000 00:00 0 [vdso]
";
        assert_eq!(
            read_only_file_mappings(maps),
            vec![
                0x55d0c0000000..0x55d0c0100000,
                0x55d0c0100000..0x55d0c0400000,
                0x7f0000200000..0x7f0000300000,
            ]
        );
    }

    #[test]
    fn resident_size_is_read_from_status() {
        let status = "Name:\tfogd\nVmHWM:\t   30000 kB\nVmRSS:\t   24380 kB\nThreads:\t9\n";
        assert_eq!(status_field_kib(status, "VmRSS:"), Some(24380));
        assert_eq!(status_field_kib("Name:\tfogd\n", "VmRSS:"), None);
    }

    /// Pages of this process's mapping present in its page tables (`/proc/self/pagemap`
    /// bit 63, the top bit of the last little-endian byte; readable without privileges).
    fn present_pages(start: usize, pages: usize) -> usize {
        let mut file = std::fs::File::open("/proc/self/pagemap").unwrap();
        let mut entries = vec![0u8; pages * 8];
        file.seek(SeekFrom::Start((start / PAGE * 8) as u64))
            .unwrap();
        file.read_exact(&mut entries).unwrap();
        entries
            .chunks_exact(8)
            .filter(|entry| entry[7] & 0x80 != 0)
            .count()
    }

    #[test]
    fn paged_out_file_pages_leave_the_page_tables_and_read_back_unchanged() {
        let pages = 256;
        let mut file = tempfile::tempfile().unwrap();
        let contents: Vec<u8> = (0..pages * PAGE).map(|i| (i / PAGE) as u8).collect();
        file.write_all(&contents).unwrap();
        // Dirty pages are written back by the kernel's flusher, not by a page-out request.
        file.sync_all().unwrap();
        // SAFETY: a private read-only mapping of a file this test owns, unmapped below.
        let start = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                contents.len(),
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(start, libc::MAP_FAILED);
        // SAFETY: the mapping is `contents.len()` bytes long and stays mapped until munmap.
        let mapped = unsafe { std::slice::from_raw_parts(start as *const u8, contents.len()) };
        let first_bytes_match = mapped
            .iter()
            .step_by(PAGE)
            .enumerate()
            .all(|(page, &byte)| byte == page as u8);
        assert!(first_bytes_match);
        let before = present_pages(start as usize, pages);

        page_out(start as usize..start as usize + contents.len()).unwrap();
        let after = present_pages(start as usize, pages);
        assert_eq!(mapped, &contents[..]);
        // SAFETY: unmaps the mapping made above; `mapped` is not used after this.
        unsafe { libc::munmap(start, contents.len()) };

        assert_eq!(before, pages);
        // Pages still queued for another CPU's LRU list are skipped by the kernel.
        assert!(after < pages / 2, "{after} of {pages} pages still mapped");
    }

    #[test]
    fn releasing_this_process_reports_its_resident_size() {
        let released = release_file_pages().unwrap();
        assert!(released.mappings > 0);
        assert!(released.resident_before_kib > 0);
    }
}
