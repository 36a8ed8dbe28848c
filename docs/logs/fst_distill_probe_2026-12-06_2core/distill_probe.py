import sys, torch
from fastslow.policy import load_model, load_tokenizer, chat_messages, prompt_token_ids
from fastslow.tasks import load_task
torch.set_num_threads(1)
ck = sys.argv[1]
tok = load_tokenizer("micro-v4")
base = load_model("micro-v4", "auto", "cpu").eval()
student = load_model(ck, "auto", "cpu").eval()
task = load_task("code", ops=3, programs="train")
probs = task.problems("val", 16, 0)
SEED, BEST = "Transform the text.", "Write the result of each step on its own line."
nl = tok.encode("\n", add_special_tokens=False)
print("newline ids", nl, "eos", tok.eos_token_id)
def ids(prompt, p):
    return prompt_token_ids(tok, [chat_messages(prompt, p.prompt)], None)[0]
@torch.no_grad()
def greedy(model, prompt_ids, n=48):
    out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    return out[0, len(prompt_ids):].tolist()
stats = {"teacher_right": 0, "student_right": 0, "base_seed_right": 0}
for p in probs[:8]:
    best_ids, seed_ids = ids(BEST, p), ids(SEED, p)
    t = greedy(base, best_ids); s = greedy(student, seed_ids); b = greedy(base, seed_ids)
    dec = lambda x: tok.decode(x, skip_special_tokens=True)
    stats["teacher_right"] += task.score(p, dec(t)).reward == 1
    stats["student_right"] += task.score(p, dec(s)).reward == 1
    stats["base_seed_right"] += task.score(p, dec(b)).reward == 1
    # along the student's own greedy answer: the teacher's top token and its P(newline), P(eos)
    full = torch.tensor([best_ids + s]); n0 = len(best_ids)
    logp = torch.log_softmax(base(full).logits[0, n0 - 1:-1].float(), -1)
    top = [tok.decode([i]) for i in logp.argmax(-1).tolist()]
    pnl = logp[:, nl[-1]].exp(); peos = logp[:, tok.eos_token_id].exp()
    print(repr(p.prompt[-40:]), "answer", repr(p.answer))
    print("  teacher (base, best prompt):", repr(dec(t)))
    print("  student (checkpoint, seed):", repr(dec(s)[:60]))
    print("  base, seed prompt          :", repr(dec(b)))
    print("  teacher's top token along student's answer:", "".join(top[:30]).replace("\n", "⏎"))
    print("  teacher P(newline) max %.2f, P(eos) max %.2f over the first 20 positions" % (pnl[:20].max(), peos[:20].max()))
print(stats)
