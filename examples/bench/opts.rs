//! The command line: `--quick`, `--only 1,3`, and the PostgreSQL and MariaDB URLs from the environment.

pub(crate) struct Opts {
    pub(crate) quick: bool,
    pub(crate) only: Vec<u32>,
    pub(crate) postgres: String,
    pub(crate) mysql: String,
}

impl Opts {
    pub(crate) fn wants(&self, row: u32) -> bool {
        self.only.is_empty() || self.only.contains(&row)
    }
}

pub(crate) fn parse_args() -> Result<Opts, String> {
    let mut opts = Opts {
        quick: false,
        only: Vec::new(),
        postgres: std::env::var("SEQUENCER_BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into()),
        mysql: std::env::var("SEQUENCER_BENCH_MYSQL_URL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into()),
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => opts.quick = true,
            "--only" => {
                let list = args.next().ok_or("--only needs a list such as 1,3")?;
                for v in list.split(',') {
                    opts.only.push(
                        v.trim()
                            .parse()
                            .map_err(|_| format!("--only: `{v}` is not a row number (1–6)"))?,
                    );
                }
            }
            other => {
                return Err(format!(
                    "unknown argument `{other}`; usage: bench [--quick] [--only 1,2,...]"
                ))
            }
        }
    }
    Ok(opts)
}
