//! The templates and assets of the HTML report: the built-in ones compiled into the binary, each
//! replaced by a file of the same name in `--templates DIR` when there is one.

use std::path::Path;

use handlebars::Handlebars;

use super::super::error::ReportError;

const REPORT: &str = include_str!("../../../templates/report.hbs");
const CELL: &str = include_str!("../../../templates/cell.hbs");
const CELL_SUMMARY: &str = include_str!("../../../templates/cell-summary.hbs");
const CELL_PAGE: &str = include_str!("../../../templates/cell-page.hbs");
const CSS: &str = include_str!("../../../templates/assets/report.css");
const JS: &str = include_str!("../../../templates/assets/report.js");

/// The templates, registered, and the assets written beside the report.
pub struct Templates {
    pub registry: Handlebars<'static>,
    pub css: String,
    pub js: String,
}

impl Templates {
    /// The built-in templates, each replaced by a file of the same name in `overrides` if present.
    pub fn load(overrides: Option<&Path>) -> Result<Templates, ReportError> {
        let read = |name: &str, default: &str| template_text(overrides, name, default);
        let mut registry = Handlebars::new();
        registry.set_strict_mode(false);
        let bad = |name: &'static str| move |e| ReportError::BadTemplate { name, source: Box::new(e) };
        registry.register_template_string("report", read("report.hbs", REPORT)?).map_err(bad("report.hbs"))?;
        registry.register_partial("cell", read("cell.hbs", CELL)?).map_err(bad("cell.hbs"))?;
        registry
            .register_template_string("cell-summary", read("cell-summary.hbs", CELL_SUMMARY)?)
            .map_err(bad("cell-summary.hbs"))?;
        registry
            .register_template_string("cell-page", read("cell-page.hbs", CELL_PAGE)?)
            .map_err(bad("cell-page.hbs"))?;
        Ok(Templates { registry, css: read("assets/report.css", CSS)?, js: read("assets/report.js", JS)? })
    }
}

/// The file `name` in `overrides` when there is one, else the built-in `default`.
fn template_text(overrides: Option<&Path>, name: &str, default: &str) -> Result<String, ReportError> {
    match overrides.map(|d| d.join(name)).filter(|p| p.exists()) {
        Some(path) => std::fs::read_to_string(&path).map_err(|source| ReportError::ReadTemplate { path, source }),
        None => Ok(default.to_string()),
    }
}
