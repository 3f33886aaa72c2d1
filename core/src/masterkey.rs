//! Loading the master key (key-encryption key) from a file or a command, the
//! way PostgreSQL's `ssl_key_file` and `ssl_passphrase_command` work. The key
//! never passes through SQL; errors describe the problem without the key.

use crate::envelope::SecretKey;
use crate::CoreError;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use zeroize::Zeroizing;

/// Read a key file: 64 hex digits, owned by `server_uid`, no group or other
/// permissions (like PostgreSQL's private-key check).
pub fn from_file(path: &Path, server_uid: u32) -> Result<SecretKey, CoreError> {
    let shown = path.display().to_string();
    let fail = |reason: String| CoreError::MasterKeyFile {
        path: shown.clone(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| fail(e.kind().to_string()))?;
    if !meta.is_file() {
        return Err(fail("not a regular file".into()));
    }
    if meta.uid() != server_uid {
        return Err(fail(format!(
            "owned by uid {}, not by the database server's user (uid {server_uid})",
            meta.uid()
        )));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(fail(format!(
            "permissions {:04o} allow group or other access; use chmod 600",
            meta.mode() & 0o7777
        )));
    }
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| fail(e.kind().to_string()))?);
    SecretKey::from_hex(&text)
}

/// Run a command through `/bin/sh -c` and read the key from its standard
/// output. Its standard error goes to the server log (as with
/// ssl_passphrase_command); it must exit with status 0.
pub fn from_command(command: &str) -> Result<SecretKey, CoreError> {
    let fail = |reason: String| CoreError::MasterKeyCommand { reason };
    let out = Command::new("/bin/sh")
        .arg("-c")
        .arg(command)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("could not run it: {}", e.kind())))?;
    let stdout = Zeroizing::new(out.stdout);
    if !out.status.success() {
        return Err(fail(match out.status.code() {
            Some(c) => format!("it exited with status {c}"),
            None => "it was killed by a signal".into(),
        }));
    }
    SecretKey::from_hex(&stdout)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    const KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn my_uid() -> u32 {
        std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0)
    }

    fn key_file(name: &str, contents: &str, mode: u32) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("aegis-mk-{}-{name}", std::process::id()));
        let mut f = std::fs::File::create(&p).unwrap();
        f.write_all(contents.as_bytes()).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn file_must_be_private_and_ours() {
        let good = key_file("good", &format!("{KEY}\n"), 0o600);
        assert!(from_file(&good, my_uid()).is_ok());
        let e = from_file(&good, my_uid() + 1).unwrap_err().to_string();
        assert!(e.contains("owned by uid"), "{e}");
        let open = key_file("open", KEY, 0o644);
        let e = from_file(&open, my_uid()).unwrap_err().to_string();
        assert!(e.contains("chmod 600") && !e.contains("0011223344"), "{e}");
        let e = from_file(Path::new("/nonexistent/aegis.key"), my_uid()).unwrap_err();
        assert!(matches!(e, CoreError::MasterKeyFile { .. }));
        // The message a caller sees does not reveal where the key lives.
        assert!(!e.to_string().contains("/nonexistent"), "{e}");
        let e = from_file(&open, my_uid()).unwrap_err().to_string();
        assert!(!e.contains(open.to_str().unwrap()), "{e}");
        for p in [good, open] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn command_output_is_the_key() {
        assert!(from_command(&format!("echo {KEY}")).is_ok());
        let e = from_command("exit 3").unwrap_err().to_string();
        assert!(e.contains("status 3"), "{e}");
        let e = from_command("echo not-a-key").unwrap_err();
        assert!(matches!(e, CoreError::MasterKeyFormat { .. }));
    }
}
