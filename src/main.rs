fn main() -> std::process::ExitCode {
    match finledger::cli::run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("finledger: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
