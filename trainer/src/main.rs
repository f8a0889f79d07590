//! `seremotion-trainer`: train the emotion model, or evaluate one the way the
//! element runs it.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use lexopt::prelude::*;
use seremotion_trainer::run::{self, DataSource, TrainOptions};

const USAGE: &str = "\
seremotion-trainer: speech-emotion model training and evaluation

USAGE:
  seremotion-trainer train (--manifest FILE | --data-dir DIR)... --out DIR [options]
  seremotion-trainer eval  (--manifest FILE | --data-dir DIR)... --model FILE --json OUT
                           [--telephony] [--plots DIR]

TRAIN OPTIONS:
  --manifest FILE        CSV manifest (path,corpus,speaker,emotion,...); repeatable
  --data-dir DIR         folder of CREMA-D/RAVDESS/SAVEE/TESS files under their
                         original names (WAV or FLAC); repeatable
  --out DIR              writes NAME.onnx, training.json, REPORT.md, eval/
  --name NAME            model file name without .onnx [default: default]
  --seed N               seeds split, augmentation, sampling, init [default: 7]
  --epochs N             maximum epochs (early stopping may end sooner) [default: 60]
  --copies N             augmented renditions per training clip [default: 8]
  --samples N            training windows per epoch [default: 8192]
  --batch N              batch size [default: 32]
  --lr X                 initial learning rate (AdamW) [default: 0.002]
  --window SECONDS       model window [default: 2.0]
  --channels A,B,..      conv block widths [default: 48,64,80,96]
  --fmin HZ, --fmax HZ   edges of the mel filterbank, e.g. 300 and 3400 for a
                         telephone-band model [default: 20, 8000]
  --weight-average D     per-batch decay of an exponential weight average that is
                         validated and exported; 0 = raw weights [default: 0.998]
  --mixup ALPHA          blend each batch with a shuffled copy of itself (and the
                         labels alike), weight ~ Beta(ALPHA, ALPHA), e.g. 0.2;
                         0 = off [default: 0]
  --refit                after choosing the epoch count on validation, train
                         again on training + validation speakers for that many
                         epochs and export that model
  --ensemble N           train N networks from different seeds on the same split
                         and export their averaged logits as one model [default: 1]
  --validate-telephone   validate on the validation speakers through the telephone
                         channel too (early stopping weighs calls and clean alike)
  --no-eval              skip the held-out test evaluation

EVAL OPTIONS:
  --model FILE           ONNX model following the seremotion contract
  --json OUT             metrics JSON (labels, overall, per_corpus)
  --telephony            pass audio through the 8 kHz G.711 mu-law channel first
  --plots DIR            confusion-matrix PNGs [default: beside OUT]
";

fn main() -> ExitCode {
    match real_main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main() -> Result<()> {
    let mut parser = lexopt::Parser::from_env();
    let command = match parser.next()? {
        Some(Value(v)) => v.string()?,
        Some(Long("help") | Short('h')) | None => {
            print!("{USAGE}");
            return Ok(());
        }
        Some(other) => bail!("{}\n\n{USAGE}", other.unexpected()),
    };
    match command.as_str() {
        "train" => {
            let opts = parse_train(&mut parser)?;
            run::train_command(&opts)?;
        }
        "eval" => {
            let mut sources = Vec::new();
            let mut model = None;
            let mut json = None;
            let mut telephony = false;
            let mut plots = None;
            while let Some(arg) = parser.next()? {
                match arg {
                    Long("manifest") => sources.push(DataSource::Manifest(parser.value()?.into())),
                    Long("data-dir") => sources.push(DataSource::Folder(parser.value()?.into())),
                    Long("model") => model = Some(PathBuf::from(parser.value()?)),
                    Long("json") => json = Some(PathBuf::from(parser.value()?)),
                    Long("telephony") => telephony = true,
                    Long("plots") => plots = Some(PathBuf::from(parser.value()?)),
                    Long("help") | Short('h') => {
                        print!("{USAGE}");
                        return Ok(());
                    }
                    _ => bail!("{}\n\n{USAGE}", arg.unexpected()),
                }
            }
            let model = model.context("eval needs --model FILE")?;
            let json = json.context("eval needs --json OUT")?;
            run::eval_command(&sources, &model, &json, telephony, plots.as_deref())?;
        }
        other => bail!("unknown command `{other}`\n\n{USAGE}"),
    }
    Ok(())
}

fn parse_train(parser: &mut lexopt::Parser) -> Result<TrainOptions> {
    let mut o = TrainOptions::default();
    let mut out = None;
    while let Some(arg) = parser.next()? {
        match arg {
            Long("manifest") => o.sources.push(DataSource::Manifest(parser.value()?.into())),
            Long("data-dir") => o.sources.push(DataSource::Folder(parser.value()?.into())),
            Long("out") => out = Some(PathBuf::from(parser.value()?)),
            Long("name") => o.name = parser.value()?.string()?,
            Long("seed") => o.seed = parser.value()?.parse()?,
            Long("epochs") => o.epochs = parser.value()?.parse()?,
            Long("copies") => o.copies = parser.value()?.parse()?,
            Long("samples") => o.samples_per_epoch = parser.value()?.parse()?,
            Long("batch") => o.batch_size = parser.value()?.parse()?,
            Long("lr") => o.learning_rate = parser.value()?.parse()?,
            Long("window") => o.window_seconds = parser.value()?.parse()?,
            Long("channels") => {
                let v = parser.value()?.string()?;
                o.channels = v
                    .split(',')
                    .map(|c| {
                        c.trim()
                            .parse::<usize>()
                            .with_context(|| format!("--channels: bad width `{c}`"))
                    })
                    .collect::<Result<_>>()?;
            }
            Long("fmin") => o.fmin = Some(parser.value()?.parse()?),
            Long("fmax") => o.fmax = Some(parser.value()?.parse()?),
            Long("weight-average") => o.weight_average_decay = parser.value()?.parse()?,
            Long("mixup") => o.mixup_alpha = parser.value()?.parse()?,
            Long("refit") => o.refit = true,
            Long("ensemble") => {
                o.ensemble = parser.value()?.parse()?;
                if o.ensemble == 0 {
                    bail!("--ensemble needs at least 1 network");
                }
            }
            Long("validate-telephone") => o.validate_telephone = true,
            Long("no-eval") => o.evaluate = false,
            Long("help") | Short('h') => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("{}\n\n{USAGE}", arg.unexpected()),
        }
    }
    o.out = out.context("train needs --out DIR")?;
    if o.sources.is_empty() {
        bail!("train needs at least one --manifest FILE or --data-dir DIR");
    }
    Ok(o)
}
