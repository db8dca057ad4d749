//! `embedlab align`, `translate`: word translation, printed.
use anyhow::Result;
use clap::ArgMatches;
use embedlab_pipelines::words::isomorphism::{
    isomorphism as measure_isomorphism, table as isomorphism_table, IsomorphismArgs,
};
use embedlab_pipelines::words::supervised::{precision_table, run_supervised, SupervisedArgs};
use embedlab_pipelines::words::translate::{translate as run_translate, TranslateArgs};
use embedlab_pipelines::words::unsupervised::{
    run_unsupervised, UnsupervisedArgs, UnsupervisedMethod,
};
use tch::Device;

pub fn isomorphism(a: &IsomorphismArgs) -> Result<()> {
    let (src, tgt) = a.emb.load()?;
    let r = measure_isomorphism(a, &src, &tgt)?;
    print!("{}", isomorphism_table(&r));
    Ok(())
}

pub fn supervised(a: &SupervisedArgs, device: Device) -> Result<()> {
    let (src, tgt) = a.emb.load()?;
    let r = run_supervised(a, &src, &tgt, device)?;
    print!(
        "{}",
        precision_table(
            &format!(
                "{:?}: {} test source words",
                a.method, r.precision[0].queries
            ),
            &r.precision
        )
    );
    Ok(())
}

pub fn unsupervised(
    a: &UnsupervisedArgs,
    matches: &ArgMatches,
    seed: i64,
    device: Device,
) -> Result<()> {
    let mut restarts_given = false;
    if a.resume.is_some() {
        let given = super::given(
            &<crate::Cli as clap::CommandFactory>::command(),
            matches,
            &["align", "unsupervised"],
        );
        super::check_resume_options(&given, &["epochs", "restarts"])?;
        restarts_given = given.iter().any(|g| g == "restarts");
    }
    let a = match &a.resume {
        // A resumed run keeps the options it was made with.
        Some(dir) => {
            let p = dir.join("config.json");
            let text = std::fs::read_to_string(&p)
                .map_err(|e| anyhow::anyhow!("{}: cannot read: {e}", p.display()))?;
            let mut saved: UnsupervisedArgs = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("{}: not an unsupervised run's options: {e}", p.display())
            })?;
            saved.adv.epochs = a.adv.epochs;
            if restarts_given {
                saved.adv.restarts = a.adv.restarts;
            }
            saved.resume = a.resume.clone();
            saved
        }
        None => a.clone(),
    };
    let r = run_unsupervised(&a, seed, device)?;
    if !r.precision.is_empty() {
        let name = match a.method {
            UnsupervisedMethod::SelfLearning => format!("self-learning ({:?} init)", a.init),
            UnsupervisedMethod::Adversarial => "adversarial + refinement".to_string(),
        };
        print!("{}", precision_table(&name.to_lowercase(), &r.precision));
    }
    Ok(())
}

pub fn translate(a: &TranslateArgs, device: Device) -> Result<()> {
    let (found, unknown) = run_translate(a, device)?;
    for (w, cands) in found {
        println!("{w}:");
        for (j, (t, s)) in cands.iter().enumerate() {
            println!("  {:>2}. {:<24} {:.4}", j + 1, t, s);
        }
    }
    if !unknown.is_empty() {
        anyhow::bail!(
            "not in the {} vocabulary: {}",
            if a.reverse { "target" } else { "source" },
            unknown.join(", ")
        );
    }
    Ok(())
}
