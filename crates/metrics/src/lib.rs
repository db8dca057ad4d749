//! embedlab evaluation metrics. Generated images: Fréchet distance,
//! precision/recall and class coverage in a feature space ([`generative`]).
//! Representations: a linear probe
//! ([`probe`]) and exact nearest neighbours ([`neighbours`]). Word translation: precision@k of a mapped
//! space against a test dictionary, as MUSE computes it (a source word counts
//! as correct at k when any of its gold translations is among its top k),
//! the hubness of a retrieval ([`hubness`]), and how far two spaces are from
//! isomorphic ([`isomorphism`]).
pub mod factors;
pub mod generative;
pub mod hubness;
pub mod isomorphism;
pub mod neighbours;
pub mod probe;
pub mod represent;
pub mod retrieval;

pub use hubness::{hubness, Hubness};
pub use retrieval::{first_gold_ranks, precision_at_k, rates_by_group, GroupRate, Precision};
