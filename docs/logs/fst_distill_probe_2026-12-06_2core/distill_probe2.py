import sys, torch
from fastslow.policy import load_model, load_tokenizer, chat_messages, prompt_token_ids
from fastslow.tasks import load_task
torch.set_num_threads(1)
tok = load_tokenizer("micro-v4")
base = load_model("micro-v4", "auto", "cpu").eval()
task = load_task("code", ops=3, programs="train")
probs = task.problems("val", 64, 0)
SEED, BEST = "Transform the text.", "Write the result of each step on its own line."
NEWLINE, EOS = tok.encode("\n", add_special_tokens=False)[-1], tok.eos_token_id
ids = lambda prompt, p: prompt_token_ids(tok, [chat_messages(prompt, p.prompt)], None)[0]
@torch.no_grad()
def teacher_first_line(p):
    """The teacher's (base weights, best prompt) greedy first line, as tokens."""
    prompt = ids(BEST, p)
    out = base.generate(torch.tensor([prompt]), max_new_tokens=48, do_sample=False, pad_token_id=tok.pad_token_id)
    first = tok.decode(out[0, len(prompt):], skip_special_tokens=True).split("\n")[0]
    return tok.encode(first, add_special_tokens=False)
first_lines = {p.id: teacher_first_line(p) for p in probs[:16]}  # once, for every model probed
@torch.no_grad()
def p_newline_after_first_line(model, prompt, p):
    """P(newline), P(end) right after the teacher's first line, teacher-forced, under `prompt`."""
    x = ids(prompt, p) + first_lines[p.id]
    logp = torch.log_softmax(model(torch.tensor([x])).logits[0, -1].float(), -1)
    return logp[NEWLINE].exp().item(), logp[EOS].exp().item()
for ck in sys.argv[1:]:
    model = base if ck == "base" else load_model(ck, "auto", "cpu").eval()
    vals = [p_newline_after_first_line(model, SEED, p) for p in probs[:16]]
    nl = [v[0] for v in vals]; eos = [v[1] for v in vals]
    print(ck[-40:], "student under seed prompt, after line 1: P(newline) median %.2e max %.2e; P(eos) median %.2e" % (
        sorted(nl)[8], max(nl), sorted(eos)[8]))
    if ck == "base":
        t = [p_newline_after_first_line(base, BEST, p)[0] for p in probs[:16]]
        print("   teacher (base under best prompt): P(newline) median %.3f min %.3f" % (sorted(t)[8], min(t)))
