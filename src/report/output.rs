//! Safe report files: written beside their destination under a temporary name and renamed
//! over it only once complete, so an existing report is never truncated by a run that
//! fails half way, and a reader never sees half a report. A destination that is one of
//! the run's inputs is refused before anything is written.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// A report being written to `dest` through a temporary file in the same directory
/// (a rename within one file system is atomic). Dropped without [`Staged::commit`], the
/// temporary file is removed and `dest` is untouched. A destination that exists and is
/// not a regular file (`/dev/null`, `/dev/stdout`, a named pipe) is written in place:
/// renaming over it would replace the device or pipe with a file.
pub struct Staged {
    dest: PathBuf,
    /// `None` when writing in place.
    tmp: Option<PathBuf>,
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
        let special = std::fs::metadata(dest).is_ok_and(|m| !m.is_file());
        if special {
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(dest)
                .map_err(|e| format!("{}: {e}", dest.display()))?;
            return Ok(Staged {
                dest: dest.to_path_buf(),
                tmp: None,
                out: Some(BufWriter::with_capacity(1 << 20, file)),
            });
        }
        let tmp = temp_path(dest);
        let file = File::create(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(Staged {
            dest: dest.to_path_buf(),
            tmp: Some(tmp),
            out: Some(BufWriter::with_capacity(1 << 20, file)),
        })
    }

    /// Flushes, syncs and renames the temporary file over the destination.
    pub fn commit(mut self) -> io::Result<()> {
        let Some(out) = self.out.take() else {
            return Ok(());
        };
        let file = out.into_inner().map_err(|e| e.into_error())?;
        match &self.tmp {
            Some(tmp) => {
                file.sync_all()?;
                std::fs::rename(tmp, &self.dest)
            }
            None => Ok(()),
        }
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
        if let (Some(_), Some(tmp)) = (self.out.take(), &self.tmp) {
            let _ = std::fs::remove_file(tmp);
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

    /// Found when `-o /dev/null` replaced the device node with a regular file.
    #[cfg(unix)]
    #[test]
    fn a_device_or_pipe_is_written_in_place_never_replaced() {
        use std::os::unix::fs::FileTypeExt;
        let dev = Path::new("/dev/null");
        let mut s = Staged::create(dev, &[]).unwrap();
        s.write_all(b"report").unwrap();
        s.commit().unwrap();
        assert!(std::fs::metadata(dev).unwrap().file_type().is_char_device());
        assert!(!temp_path(dev).exists());
        // A named pipe keeps being a pipe, and its reader gets the report.
        let d = scratch("fifo");
        let fifo = d.join("report.fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            let reader = {
                let fifo = fifo.clone();
                std::thread::spawn(move || std::fs::read(fifo).unwrap())
            };
            let mut s = Staged::create(&fifo, &[]).unwrap();
            s.write_all(b"through the pipe").unwrap();
            s.commit().unwrap();
            assert_eq!(reader.join().unwrap(), b"through the pipe");
            assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
        }
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
