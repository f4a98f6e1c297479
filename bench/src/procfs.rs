//! What Linux tells about a process: its peak resident memory
//! (`/proc/<pid>/status`), which process listens on a port, and CPU pinning
//! through `taskset`.

use std::process::Command;

use anyhow::{Context, Result, bail};

/// `VmHWM`: the peak resident set size of `pid`, in KiB.
pub fn peak_rss_kib(pid: u32) -> Result<u64> {
    status_field(pid, "VmHWM")
}

fn status_field(pid: u32, name: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .with_context(|| format!("no {name} for {pid}"))?;
    let kib = line.trim().trim_end_matches("kB").trim();
    Ok(kib.parse()?)
}

/// The process that listens on `127.0.0.1:port` (TCP), found through the
/// socket's inode: the Functions host simulator does not give out the
/// handler's process id.
pub fn pid_listening_on(port: u16) -> Result<u32> {
    let table = std::fs::read_to_string("/proc/net/tcp")?;
    let wanted = format!(":{port:04X}");
    let inode = table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let listening = fields.get(3) == Some(&"0A");
            let local = fields.get(1)?;
            (listening && local.ends_with(&wanted)).then(|| fields.get(9).map(|s| s.to_string()))?
        })
        .next()
        .with_context(|| format!("nothing listens on port {port}"))?;
    let target = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let owns = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == target));
        if owns {
            return Ok(pid);
        }
    }
    bail!("no process owns the socket listening on port {port}")
}

/// Pins every thread of `pid` to `cpus` (a `taskset` list such as `1`).
/// Threads that end meanwhile are skipped; new threads inherit the
/// affinity of the thread that starts them.
pub fn pin(pid: u32, cpus: &str) -> Result<()> {
    let mut pinned = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))?.flatten() {
        let status = Command::new("taskset")
            .args(["-p", "-c", cpus])
            .arg(task.file_name())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .context("running taskset")?;
        pinned += usize::from(status.success());
    }
    if pinned == 0 {
        bail!("taskset -p -c {cpus} failed for every thread of {pid}");
    }
    Ok(())
}

/// The CPUs this process may run on (`Cpus_allowed_list`).
pub fn allowed_cpus() -> Result<String> {
    let text = std::fs::read_to_string("/proc/self/status")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .map(|s| s.trim().to_string())
        .context("no Cpus_allowed_list")
}

/// CPU time `pid` has used (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces; the fields after it do not.
    let after = text.rsplit_once(')').context("malformed stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> { Ok(fields.get(i).context("short stat")?.parse()?) };
    // utime and stime are fields 14 and 15 of stat: 11 and 12 after ')'.
    // USER_HZ is 100 on Linux.
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}
