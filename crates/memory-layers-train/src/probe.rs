//! Probes that generate: held-out QA (exact match, F1, answer NLL) and fact recall.

use burn::tensor::ElementConversion;
use memory_layers_zoo::ZooBackend;
use memory_layers_zoo::{Sampler, Transformer, generate, token_nll};

use crate::TrainError;
use crate::loss::token_tensor;
use memory_layers_data::progress::Progress;
use memory_layers_data::{
    QaPair, QaScores, RecallProbe, Tokenizer, exact_match, prompt, recalls, token_f1,
};

/// Longest generated answer, in tokens.
const MAX_ANSWER_TOKENS: usize = 24;

/// Tokens a recall continuation may run past the answer's own length.
const RECALL_SLACK_TOKENS: usize = 8;

/// The first `limit` items (0: all).
pub(crate) fn first<T>(items: &[T], limit: usize) -> &[T] {
    if limit == 0 {
        items
    } else {
        &items[..limit.min(items.len())]
    }
}

/// The greedy continuation of `prompt_ids`, at most `max_tokens` tokens, up to its first
/// newline.
fn greedy_line<B: ZooBackend>(
    model: &Transformer<B>,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    max_tokens: usize,
) -> Result<String, TrainError> {
    let ids = generate(model, prompt_ids, max_tokens, Sampler::Greedy, |ids| {
        tokenizer.decode(ids).contains('\n')
    })?;
    let text = tokenizer.decode(&ids);
    Ok(text.split('\n').next().unwrap_or_default().to_string())
}

/// Scores QA pairs: greedy answers up to a newline, SQuAD exact match and F1, and the NLL
/// of ` {answer}\n` after the prompt (prompt and answer are tokenized separately and
/// concatenated). With `progress`, a phase with a rate and an ETA.
pub(crate) fn qa_scores<B: ZooBackend>(
    model: &Transformer<B>,
    tokenizer: &Tokenizer,
    qa: &[QaPair],
    device: &B::Device,
    progress: bool,
) -> Result<QaScores, TrainError> {
    let what = format!("evaluating: {} QA questions", qa.len());
    let mut bar = Progress::start(progress && !qa.is_empty(), what, qa.len(), "questions");
    let (mut em, mut f1, mut answer_nll) = (0.0, 0.0, 0.0);
    for pair in qa {
        bar.add(1);
        let prompt_ids = tokenizer.encode(&prompt(&pair.question));
        let predicted = greedy_line(model, tokenizer, &prompt_ids, MAX_ANSWER_TOKENS)?;
        em += exact_match(predicted.trim(), &pair.answer);
        f1 += token_f1(predicted.trim(), &pair.answer);

        let answer_ids = tokenizer.encode(&format!(" {}\n", pair.answer));
        let ids: Vec<u32> = prompt_ids.iter().chain(&answer_ids).copied().collect();
        let all = token_tensor::<B>(&ids, 1, device);
        let n = ids.len();
        let logits = model.forward(all.clone().slice_dim(1, 0..n - 1))?.logits;
        model.check_value_ranges()?;
        let per_token = token_nll(logits, all.slice_dim(1, 1..n));
        let start = prompt_ids.len() - 1;
        answer_nll += per_token
            .slice_dim(1, start..n - 1)
            .mean()
            .into_scalar()
            .elem::<f64>();
    }
    let count = qa.len();
    let mean = |x: f64| if count == 0 { 0.0 } else { x / count as f64 };
    let scores = QaScores {
        exact_match: 100.0 * mean(em),
        f1: 100.0 * mean(f1),
        answer_nll: mean(answer_nll),
        count,
    };
    bar.done(format!("exact match {:.2}%", scores.exact_match));
    Ok(scores)
}

/// Percent of `probes` whose greedy continuation (at most the answer's tokens plus
/// [`RECALL_SLACK_TOKENS`], up to a newline) [`recalls`] the answer; `None` without probes.
/// With `progress`, a phase with a rate and an ETA.
pub(crate) fn recall_score<B: ZooBackend>(
    model: &Transformer<B>,
    tokenizer: &Tokenizer,
    probes: &[RecallProbe],
    progress: bool,
) -> Result<Option<f64>, TrainError> {
    if probes.is_empty() {
        return Ok(None);
    }
    let what = format!("evaluating: {} fact-recall probes", probes.len());
    let mut bar = Progress::start(progress, what, probes.len(), "probes");
    let mut hits = 0usize;
    for probe in probes {
        bar.add(1);
        let prompt_ids = tokenizer.encode(&probe.prompt);
        let budget = tokenizer.encode(&format!(" {}", probe.answer)).len() + RECALL_SLACK_TOKENS;
        let continuation = greedy_line(model, tokenizer, &prompt_ids, budget)?;
        hits += usize::from(recalls(&continuation, &probe.answer));
    }
    let score = 100.0 * hits as f64 / probes.len() as f64;
    bar.done(format!("{score:.2}%"));
    Ok(Some(score))
}
