# The two set-up-and-run commands of the README:
#   make demo   — set up (libtorch, data), build, run the main job
#   make test   — set up libtorch and the offline data (the pairs' too), run the whole test
#                 suite (including the tests that need data/, #[ignore]d for a
#                 plain `cargo test`), then clippy (lints, and the declared
#                 rust-version against the standard library items used)
.PHONY: demo test setup data data-pairs build clippy fmt bench-csls bench-muse bench-muse-unsupervised bench-unsupervised-robustness bench-vae bench-autoencoders bench-gan bench-precision bench-generative bench-flows

demo: setup data build
	./target/release/embedlab demo

test: setup data-pairs
	./scripts/setup-chromium.sh
	./scripts/test.sh
	cargo clippy --workspace --all-targets -- -D warnings

setup:
	./scripts/setup.sh

data:
	./scripts/fetch-data.sh

# the default set and the other language pairs' vectors and dictionaries (en300, ja)
data-pairs:
	./scripts/fetch-data.sh pairs

build: setup
	cargo build --release

clippy: setup
	cargo clippy --workspace --all-targets -- -D warnings

fmt:
	cargo fmt --all

bench-csls: build
	./target/release/embedlab bench csls --n 200000 --dim 300

# needs MUSE_DIR (a MUSE checkout); see bench/muse_supervised.sh
bench-muse: build data
	./bench/muse_supervised.sh

# needs MUSE_DIR; see bench/muse_unsupervised.sh
bench-muse-unsupervised: build data
	./bench/muse_unsupervised.sh

bench-unsupervised-robustness: build data
	./bench/unsupervised_robustness.sh

# embedlab's MLP and conv VAEs beside a PyTorch reference: speed and test NLL
bench-vae: build data
	./bench/vae_vs_pytorch.sh

# AE/VAE/CAE/CVAE on Fashion-MNIST and the MNIST subset (docs/autoencoders.md)
bench-autoencoders: build data
	./bench/autoencoders.sh

# embedlab's conv DCGAN / WGAN-GP beside the same models in PyTorch
bench-gan: build data
	./bench/gan_vs_pytorch.sh

# bf16 and channels-last training against f32, beside PyTorch's CPU configurations
bench-precision: build data
	./bench/precision.sh

# AE, VAE, CVAE, WAE-MMD, WAE-GAN and four GANs scored in one classifier's features
bench-generative: build data
	./bench/generative.sh

# Glow, RealNVP, i-ResNet: bits/dim, the PyTorch Glow side by side, stability, limits (docs/flows.md)
bench-flows: build data
	./bench/flows.sh
