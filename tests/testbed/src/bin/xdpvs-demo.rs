//! The demo, as `cargo xtask demo` runs it (built after the XDP object, which it embeds).

fn main() -> anyhow::Result<()> {
    xdpvs_testbed::demo::run()
}
