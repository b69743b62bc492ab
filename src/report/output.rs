//! Safe report files: written beside their destination under a temporary name and renamed
//! over it only once complete, so an existing report is never truncated by a run that
//! fails half way, and a reader never sees half a report. A destination that is one of
//! the run's inputs is refused before anything is written.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A report being written to `dest` through a temporary file in the same directory
/// (a rename within one file system is atomic). Dropped without [`Staged::commit`], the
/// temporary file is removed and `dest` is untouched.
pub struct Staged {
    dest: PathBuf,
    tmp: PathBuf,
    out: Option<BufWriter<File>>,
}

/// The temporary name used for `dest`: hidden, beside it, unique to this process.
pub fn temp_path(dest: &Path) -> PathBuf {
    let dir = dest
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = dest
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "report".into());
    dir.join(format!(".{name}.dpaudit-{}.tmp", std::process::id()))
}

/// An error when `dest` names the same file as one of `inputs` (after resolving links).
pub fn refuse_input(dest: &Path, inputs: &[PathBuf]) -> Result<(), String> {
    let Ok(d) = std::fs::canonicalize(dest) else {
        return Ok(()); // does not exist yet: cannot be an input
    };
    if inputs
        .iter()
        .any(|i| std::fs::canonicalize(i).is_ok_and(|i| i == d))
    {
        return Err(format!(
            "{}: refusing to write over an input capture",
            dest.display()
        ));
    }
    Ok(())
}

impl Staged {
    /// Opens the temporary file for `dest`, after checking `dest` is none of `inputs`.
    pub fn create(dest: &Path, inputs: &[PathBuf]) -> Result<Staged, String> {
        refuse_input(dest, inputs)?;
        let tmp = temp_path(dest);
        let file = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(Staged {
            dest: dest.to_path_buf(),
            tmp,
            out: Some(BufWriter::new(file)),
        })
    }

    /// Flushes, syncs and renames the temporary file over the destination.
    pub fn commit(mut self) -> io::Result<()> {
        if let Some(out) = self.out.take() {
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
        }
        std::fs::rename(&self.tmp, &self.dest)
    }
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.out {
            Some(o) => o.write(buf),
            None => Err(io::Error::other("report already committed")),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match &mut self.out {
            Some(o) => o.flush(),
            None => Ok(()),
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if self.out.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Where a report goes: standard output, or a [`Staged`] file.
pub enum ReportOut {
    Stdout(BufWriter<io::Stdout>),
    File(Staged),
}

impl ReportOut {
    /// Standard output, or `dest` staged (refused when it is one of `inputs`).
    pub fn open(dest: Option<&Path>, inputs: &[PathBuf]) -> Result<ReportOut, String> {
        Ok(match dest {
            None => ReportOut::Stdout(BufWriter::with_capacity(1 << 16, io::stdout())),
            Some(d) => ReportOut::File(Staged::create(d, inputs)?),
        })
    }

    /// Flushes standard output, or commits the file.
    pub fn finish(self) -> io::Result<()> {
        match self {
            ReportOut::Stdout(mut o) => o.flush(),
            ReportOut::File(s) => s.commit(),
        }
    }
}

impl Write for ReportOut {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            ReportOut::Stdout(o) => o.write(buf),
            ReportOut::File(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            ReportOut::Stdout(o) => o.flush(),
            ReportOut::File(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dpaudit-output-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn an_abandoned_report_leaves_the_old_one_whole() {
        let d = scratch("abandon");
        let dest = d.join("report.json");
        std::fs::write(&dest, b"old report").unwrap();
        {
            let mut s = Staged::create(&dest, &[]).unwrap();
            s.write_all(b"half of a new").unwrap();
            assert_eq!(std::fs::read(&dest).unwrap(), b"old report");
        }
        assert_eq!(std::fs::read(&dest).unwrap(), b"old report");
        assert!(!temp_path(&dest).exists(), "temporary file removed");
        let mut s = Staged::create(&dest, &[]).unwrap();
        s.write_all(b"new report").unwrap();
        s.commit().unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"new report");
        assert!(!temp_path(&dest).exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_input_is_never_a_destination() {
        let d = scratch("input");
        let cap = d.join("in.pcap");
        std::fs::write(&cap, b"capture").unwrap();
        let other = d.join("sub").join("..").join("in.pcap");
        std::fs::create_dir_all(d.join("sub")).unwrap();
        let err = Staged::create(&other, std::slice::from_ref(&cap))
            .err()
            .expect("refused");
        assert!(err.contains("refusing"), "{err}");
        assert_eq!(std::fs::read(&cap).unwrap(), b"capture");
        let _ = std::fs::remove_dir_all(&d);
    }
}
