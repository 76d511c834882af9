//! Process and host resources: RSS and CPU of this process, threads, open
//! file descriptors, browser child processes, and the free space of the
//! data directory's file system.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Mutex;

use sysinfo::{Disks, Pid, ProcessRefreshKind, ProcessesToUpdate, System};

pub struct SystemSampler {
    sys: Mutex<Option<System>>,
    pid: Option<Pid>,
    job_kinds: Mutex<BTreeSet<String>>,
}

pub struct ProcessStats {
    pub rss_bytes: u64,
    pub cpu_percent: f32,
    pub browser_processes: u64,
    /// Resident memory of those browser processes together.
    pub browser_rss_bytes: u64,
}

impl Default for SystemSampler {
    fn default() -> Self {
        Self::new()
    }
}

impl SystemSampler {
    pub fn new() -> Self {
        Self {
            sys: Mutex::new(None),
            pid: sysinfo::get_current_pid().ok(),
            job_kinds: Mutex::default(),
        }
    }

    fn with_sys<T>(&self, f: impl FnOnce(&mut System) -> T) -> Option<T> {
        let mut guard = self.sys.lock().ok()?;
        if guard.is_none() {
            *guard = System::new().ok();
        }
        guard.as_mut().map(f)
    }

    /// Resident memory of this process (cheap: refreshes one process).
    pub fn rss_bytes(&self) -> Option<u64> {
        let pid = self.pid?;
        self.with_sys(|sys| {
            sys.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                false,
                ProcessRefreshKind::nothing().with_memory(),
            );
            sys.process(pid).map(|p| p.memory())
        })
        .flatten()
    }

    /// RSS, CPU since the previous reading, and browser (Chromium) processes
    /// descending from this one.
    pub fn process(&self) -> ProcessStats {
        let Some(pid) = self.pid else {
            return ProcessStats {
                rss_bytes: 0,
                cpu_percent: 0.0,
                browser_processes: 0,
                browser_rss_bytes: 0,
            };
        };
        self.with_sys(|sys| {
            sys.refresh_processes_specifics(
                ProcessesToUpdate::All,
                true,
                ProcessRefreshKind::nothing().with_memory().with_cpu(),
            );
            let (rss, cpu) = sys
                .process(pid)
                .map(|p| (p.memory(), p.cpu_usage()))
                .unwrap_or((0, 0.0));
            let browsers: Vec<u64> = sys
                .processes()
                .values()
                .filter(|p| {
                    let name = p.name().to_string_lossy().to_ascii_lowercase();
                    (name.contains("chrom") || name.contains("headless_shell"))
                        && descends_from(sys, p.pid(), pid)
                })
                .map(|p| p.memory())
                .collect();
            ProcessStats {
                rss_bytes: rss,
                cpu_percent: cpu,
                browser_processes: browsers.len() as u64,
                browser_rss_bytes: browsers.iter().sum(),
            }
        })
        .unwrap_or(ProcessStats {
            rss_bytes: 0,
            cpu_percent: 0.0,
            browser_processes: 0,
            browser_rss_bytes: 0,
        })
    }

    pub fn note_job_kind(&self, kind: &str) {
        if let Ok(mut k) = self.job_kinds.lock()
            && k.len() < 200
        {
            k.insert(kind.to_string());
        }
    }

    pub fn known_job_kinds(&self) -> Vec<String> {
        self.job_kinds
            .lock()
            .map(|k| k.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn descends_from(sys: &System, mut pid: Pid, ancestor: Pid) -> bool {
    for _ in 0..32 {
        match sys.process(pid).and_then(|p| p.parent()) {
            Some(parent) if parent == ancestor => return true,
            Some(parent) => pid = parent,
            None => return false,
        }
    }
    false
}

/// Threads of this process (Linux: /proc/self/status).
pub fn threads() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Open file descriptors of this process (Linux: /proc/self/fd).
pub fn open_fds() -> Option<u64> {
    std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|d| d.count() as u64)
}

/// (available, total) bytes of the file system holding `path`: the mounted
/// disk with the longest mount point that is a prefix of the path.
pub fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let path = std::fs::canonicalize(path).ok()?;
    let disks = Disks::new_with_refreshed_list().ok()?;
    disks
        .iter()
        .filter(|d| path.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| (d.available_space(), d.total_space()))
}

/// Size of a file, 0 when missing.
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}
