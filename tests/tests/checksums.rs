//! The checksums the macros record for each operation and task: the ledger compares them with the ones it kept,
//! so the same source must give the same value whatever the macro does internally. Pinned here for bodies that
//! exercise what a token printer could print differently: unspaced operators, closures, nested generics,
//! lifetimes, macros, doc comments, inner attributes, labels and `?`.

#[sequencer::operations]
#[rustfmt::skip] // The bodies stay as written: unformatted source is part of what is pinned.
mod pinned {
    #![allow(dead_code, unused_variables, unknown_lints, unnecessary_transmutes, clippy::all)]
    use sequencer::prelude::*;

    #[operation(timestamp = "2024_01_01_000000", idempotent)]
    pub async fn plain(_ctx: &Ctx) -> Result<()> {
        Ok(())
    }

    /// Documented, with an unformatted body.
    #[operation(timestamp = "2024_01_01_000001", depends_on = [plain], retries = 3, backoff = [1, 5])]
    #[allow(clippy::let_and_return)]
    pub(crate) async fn unspaced(ctx: &Ctx) -> Result<()> {
        let a=1+2*3;let b=-a;let c=a>>1<<2;let d=&&a;let e=!true&&false||true;
        let f=||a+b;let g=|x:i32|->i32{x*2};let h:Vec<Vec<u8>>=Vec::new();
        let i=a..=b;let j=..;let k=[0u8;4];let l=(a,);let m=k[..2].len();
        if a>=b&&c!=**d{return Ok(())}
        Ok(())
    }

    #[operation(timestamp = "2024_01_01_000002", depends_on = [unspaced], timeout = "2m", tags = ["x"])]
    async fn with_macros(ctx: &Ctx) -> Result<()> {
        #![allow(unreachable_code)]
        let s = format!("{}-{:?}", ctx.attempt(), vec![1, 2,3]);
        let r: std::result::Result<u8, String> = Ok(1);
        let v = r.map_err(|e| anyhow::anyhow!(e))?;
        'outer: for x in 0..v {
            loop {
                break 'outer;
            }
        }
        match v { 0 => {}, n if n > 1 => { let _ = n; } _ => () }
        let closure = async move |y: &str| -> usize { y.len() };
        struct Local<'a> { s: &'a str }
        impl<'a> Local<'a> { fn get(&self) -> &'a str { self.s } }
        assert!(matches!(v, 1 | 2), "v was {v}");
        Ok(())
    }

    #[operation(timestamp = "2024_01_01_000003", name = "named-op", depends_on = ["2024_01_01_000002_with_macros"])]
    pub async fn named(ctx: &Ctx) -> Result<()> {
        let x = ctx.attempt() as u64; let y = x.pow(2) as f64 / 2.0e3; let z = y as i64 - -1;
        let t = (1, "two", 'c', b'd', r"raw", br#"bytes"#, 0x1f_u32, 1_000i64);
        let _ = unsafe { std::mem::transmute::<u32, f32>(1) };
        Ok(())
    }

    /// A task's data.
    #[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
    pub struct Args {
        pub n: i64,
    }

    #[task(queue = "pinned", retries = 2)]
    pub async fn pinned_task(ctx: &Ctx, args: Args) -> Result<()> {
        let m=args.n*2-1;let _=m as u8;
        Ok(())
    }
}

#[test]
fn checksums_of_the_same_source_stay_the_same() {
    let r = pinned::registry();
    let sums: Vec<(&str, u64)> = r
        .operations()
        .iter()
        .map(|op| (op.meta.name, op.meta.checksum))
        .chain(
            r.tasks()
                .iter()
                .map(|t| (t.op.meta.name, t.op.meta.checksum)),
        )
        .collect();
    // The values the macros gave before they stopped parsing function bodies (issue 19).
    assert_eq!(
        sums,
        [
            ("2024_01_01_000000_plain", 13201208912059430188),
            ("2024_01_01_000001_unspaced", 14141406072410366777),
            ("2024_01_01_000002_with_macros", 16464573739625516217),
            ("named-op", 14180552607181658594),
            ("pinned_task", 9467415501493131454),
        ]
    );
}
