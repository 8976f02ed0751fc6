fn main() -> std::process::ExitCode {
    stls::main()
}
