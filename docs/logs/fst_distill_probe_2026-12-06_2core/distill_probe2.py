import sys, torch
from fastslow.policy import load_model, load_tokenizer, chat_messages, prompt_token_ids
from fastslow.tasks import load_task
torch.set_num_threads(1)
tok = load_tokenizer("micro-v4")
base = load_model("micro-v4", "auto", "cpu").eval()
task = load_task("code", ops=3, programs="train")
probs = task.problems("val", 64, 0)
SEED, BEST = "Transform the text.", "Write the result of each step on its own line."
ids = lambda prompt, p: prompt_token_ids(tok, [chat_messages(prompt, p.prompt)], None)[0]
@torch.no_grad()
def p_newline_after_first_line(model, prompt, p):
    """P(newline) right after the teacher's (correct) first line, teacher-forced, under `prompt`."""
    first = base.generate(torch.tensor([ids(BEST, p)]), max_new_tokens=48, do_sample=False, pad_token_id=tok.pad_token_id)
    first = tok.decode(first[0, len(ids(BEST, p)):], skip_special_tokens=True).split("\n")[0]
    line = tok.encode(first, add_special_tokens=False)
    x = ids(prompt, p) + line
    logp = torch.log_softmax(model(torch.tensor([x])).logits[0, -1].float(), -1)
    return logp[4].exp().item(), logp[3].exp().item()
for ck in sys.argv[1:]:
    model = base if ck == "base" else load_model(ck, "auto", "cpu").eval()
    vals = [p_newline_after_first_line(model, SEED, p) for p in probs[:16]]
    nl = [v[0] for v in vals]; eos = [v[1] for v in vals]
    print(ck[-40:], "student under seed prompt, after line 1: P(newline) median %.2e max %.2e; P(eos) median %.2e" % (
        sorted(nl)[8], max(nl), sorted(eos)[8]))
    if ck == "base":
        t = [p_newline_after_first_line(base, BEST, p)[0] for p in probs[:16]]
        print("   teacher (base under best prompt): P(newline) median %.3f min %.3f" % (sorted(t)[8], min(t)))
