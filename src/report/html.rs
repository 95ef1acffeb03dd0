//! The HTML report: `report.html` plus `assets/`, rendered with handlebars from `templates/`.
//!
//! The templates stay dumb: everything is computed into typed view models ([`page`] for the page,
//! [`cell`] for each cell's section, [`console`] for its console window, [`machine`] for its machine
//! facts in words, [`phases`] for its boot phases' bar, [`boot`] for the table of every cell's
//! phases, [`since`] for what changed since a baseline run). Every text from the
//! machine goes through handlebars' `{{ }}`, which escapes it. The default templates are compiled
//! into the binary; `--templates DIR` overrides any of them by file name ([`templates`]).
//!
//! The page is streamed to the file: `report.hbs` calls the `cell_sections` helper, which builds one cell's
//! view model, renders `cell.hbs` with it and writes it out before the next, so memory holds one
//! cell's model at a time however many cells the run had (a whole-report model of 1,000 cells is
//! tens of megabytes of JSON values, and the report's HTML as many again).
//!
//! Beyond [`INLINE_ALL`] cells, a cell that passed gets a page of its own (`cells/ID/index.html`,
//! `cell-page.hbs`) and only a line in report.html (`cell-summary.hbs`): a report of a thousand cells
//! opens with what went wrong, not with the DOM of everything that went right.

mod boot;
mod cell;
mod console;
mod labels;
mod machine;
mod page;
mod phases;
mod since;
mod templates;

use std::io::Write;
use std::path::{Path, PathBuf};

use handlebars::{Context, Handlebars, Helper, HelperDef, HelperResult, Output, RenderContext, RenderErrorReason};

use self::cell::{CellSummary, CellView};
pub use self::labels::{anchor, secs, status_label};
use self::page::{CellLine, Page};
use self::templates::Templates;
use super::error::ReportError;
use super::{Format, Writer};
use crate::results::{CellResult, RunResults};

/// Runs up to this many cells have every cell's section in report.html.
pub const INLINE_ALL: usize = 50;

/// `--report html`: `report.html` and `assets/`.
pub const FORMAT: Format = Format::new(&Html);

struct Html;

impl Writer for Html {
    fn name(&self) -> &'static str {
        "html"
    }

    fn write(&self, results: &RunResults, dir: &Path, templates: Option<&Path>) -> Result<PathBuf, ReportError> {
        Renderer::new(templates)?.write(results, dir)
    }
}

pub struct Renderer {
    templates: Templates,
}

impl Renderer {
    /// The built-in templates, each replaced by a file of the same name in `overrides` if present.
    pub fn new(overrides: Option<&Path>) -> Result<Renderer, ReportError> {
        Ok(Renderer { templates: Templates::load(overrides)? })
    }

    /// Renders the report for results stored in `dir` (console logs are read from there) into `out`,
    /// one cell at a time.
    pub fn render_to(&self, results: &RunResults, dir: &Path, out: impl Write) -> Result<(), ReportError> {
        let mut cells: Vec<&CellResult> = results.cells.iter().collect();
        cells.sort_by_key(|c| labels::order(c.status));
        // A registry of this render's own: the helper borrows this run's cells.
        let mut hb: Handlebars<'_> = self.templates.registry.clone();
        let lines = CellLine::all(&cells);
        let model = Page::new(results, &lines, &cells);
        let own_pages = cells.len() > INLINE_ALL;
        hb.register_helper("cell_sections", Box::new(CellSections { cells, dir, own_pages }));
        let mut out = std::io::BufWriter::new(out);
        hb.render_to_write("report", &model, &mut out).map_err(|e| ReportError::Render(Box::new(e)))?;
        out.flush().map_err(ReportError::Flush)
    }

    /// Renders the report into a string (for tests and small runs).
    pub fn render(&self, results: &RunResults, dir: &Path) -> Result<String, ReportError> {
        let mut html = Vec::new();
        self.render_to(results, dir, &mut html)?;
        String::from_utf8(html).map_err(ReportError::NotUtf8)
    }

    /// Writes `report.html` and `assets/` into `dir`.
    pub fn write(&self, results: &RunResults, dir: &Path) -> Result<PathBuf, ReportError> {
        let assets = dir.join("assets");
        std::fs::create_dir_all(&assets).map_err(|source| ReportError::CreateDir { path: assets.clone(), source })?;
        let asset = |name: &str, text: &str| {
            std::fs::write(assets.join(name), text).map_err(|source| ReportError::Write { path: name.into(), source })
        };
        asset("report.css", &self.templates.css)?;
        asset("report.js", &self.templates.js)?;
        // Rendered beside it and renamed over it: a template that fails half-way must not leave a
        // half page where a good report was.
        let file = dir.join("report.html");
        let partial = dir.join("report.html.partial");
        let created =
            std::fs::File::create(&partial).map_err(|source| ReportError::Write { path: partial.clone(), source })?;
        if let Err(e) = self.render_to(results, dir, created) {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
        std::fs::rename(&partial, &file).map_err(|source| ReportError::Write { path: file.clone(), source })?;
        Ok(file)
    }
}

/// `{{cell_sections}}` in report.hbs: each cell's section, rendered with `cell.hbs` from a model built
/// just before and dropped just after.
struct CellSections<'a> {
    cells: Vec<&'a CellResult>,
    dir: &'a Path,
    /// Passed cells go to pages of their own (a large run).
    own_pages: bool,
}

impl CellSections<'_> {
    /// Writes `cell`'s own page, and returns its line in report.html.
    fn own_page(&self, registry: &Handlebars<'_>, cell: &CellResult) -> Result<String, handlebars::RenderError> {
        // Its page sits two levels down: its links go up to the results directory.
        let page = registry.render("cell-page", &CellView::new(cell, self.dir, "../../"))?;
        let file = self.dir.join("cells").join(&cell.id).join("index.html");
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(RenderErrorReason::from)?;
        }
        std::fs::write(&file, page).map_err(RenderErrorReason::from)?;
        registry.render("cell-summary", &CellSummary::new(cell, format!("cells/{}/index.html", cell.id)))
    }
}

impl HelperDef for CellSections<'_> {
    fn call<'reg: 'rc, 'rc>(
        &self,
        _: &Helper<'rc>,
        registry: &'reg Handlebars<'reg>,
        _: &'rc Context,
        _: &mut RenderContext<'reg, 'rc>,
        out: &mut dyn Output,
    ) -> HelperResult {
        for cell in &self.cells {
            let html = if self.own_pages && cell.status.is_pass() && !cell.flaky {
                self.own_page(registry, cell)?
            } else {
                registry.render("cell", &CellView::new(cell, self.dir, ""))?
            };
            out.write(&html).map_err(RenderErrorReason::from)?;
        }
        Ok(())
    }
}
