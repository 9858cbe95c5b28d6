//! The `aiops` daemon and command line.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match aiops::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}` prints the whole chain of causes on one line, which is what a user needs here.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
