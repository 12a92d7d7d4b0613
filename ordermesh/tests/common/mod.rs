//! Helpers shared by the command-line tool's tests.

use std::process::Command;

/// Runs a peer tool: whether it succeeded, and what it printed (stdout, then stderr). `what`
/// says how the tool gets here when it cannot be started.
pub fn run_peer(command: &mut Command, what: &str) -> (bool, String) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("run {:?} ({what}): {e}", command.get_program()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}
