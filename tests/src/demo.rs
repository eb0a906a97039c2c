//! placeholder
pub fn run(_o: &std::path::Path, _b: &std::path::Path) -> anyhow::Result<()> {
    Ok(())
}
