//! Many pipelines in a row, each a recorded step whose failure is kept to
//! itself: `steps.json` (rewritten after every step, so an interrupted
//! sequence still says how far it got) lists each step's status, time,
//! error and run folder, and the HTML report shows them.
use embedlab_train::report::{Step, STEPS_FILE};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Steps {
    root: PathBuf,
    pub list: Vec<Step>,
}

impl Steps {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            list: vec![],
        }
    }

    /// Runs one step; returns whether it succeeded.
    pub fn run(
        &mut self,
        name: &str,
        run: Option<PathBuf>,
        f: impl FnOnce() -> crate::Result<()>,
    ) -> bool {
        eprintln!("\n== {name}");
        let t0 = Instant::now();
        let res = f();
        let seconds = t0.elapsed().as_secs_f64();
        let ok = res.is_ok();
        if let Err(e) = &res {
            eprintln!("!! {name} failed: {e}");
        }
        self.list.push(Step {
            name: name.into(),
            status: if ok { "ok" } else { "failed" }.into(),
            seconds,
            error: res.err().map(|e| e.to_string()),
            run,
        });
        if let Err(e) =
            embedlab_data::atomic::write_json_atomic(&self.root.join(STEPS_FILE), &self.list)
        {
            eprintln!("cannot write {STEPS_FILE}: {e}");
        }
        ok
    }

    /// The names of the steps that failed.
    pub fn failed(&self) -> Vec<String> {
        self.list
            .iter()
            .filter(|s| s.status != "ok")
            .map(|s| s.name.clone())
            .collect()
    }
}
