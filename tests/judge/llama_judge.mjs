// An independent judge: llama.cpp itself (prebuilt inside the npm package node-llama-cpp)
// loads a GGUF file written by lowbit and reports what llama.cpp computes, as JSON on stdout.
//
//   node llama_judge.mjs tokenize MODEL.gguf TEXT_FILE
//       -> {"tokens": [...]}  llama.cpp's tokenization (BOS as the vocabulary asks, no special parsing)
//   node llama_judge.mjs perplexity MODEL.gguf TOKENS_JSON CTX CHUNKS [DIST_OUT N_VOCAB]
//       -> {"ppl": x, "nll": [...]}  llama.cpp's perplexity protocol over the given tokens:
//          windows of CTX tokens, BOS first, second half scored. With DIST_OUT, also writes the
//          full next-token distributions of the scored positions (float32, row-major).
import {getLlama, LlamaLogLevel} from "node-llama-cpp";
import fs from "node:fs";

const [cmd, modelPath, ...rest] = process.argv.slice(2);
const llama = await getLlama({gpu: false, logLevel: LlamaLogLevel.error, build: "never"});
const model = await llama.loadModel({modelPath});

if (cmd === "tokenize") {
  const text = fs.readFileSync(rest[0], "utf8");
  const tokens = Array.from(model.tokenize(text, false));
  if (model.tokens.bos != null && model.tokens.shouldPrependBosToken) tokens.unshift(model.tokens.bos);
  process.stdout.write(JSON.stringify({tokens}));
} else if (cmd === "perplexity") {
  const tokens = JSON.parse(fs.readFileSync(rest[0], "utf8")).tokens;
  const ctx = Number(rest[1]), chunks = Number(rest[2]), distOut = rest[3], nVocab = Number(rest[4] ?? 0);
  const context = await model.createContext({contextSize: ctx, batchSize: ctx, threads: 2});
  const seq = context.getSequence();
  const nll = [];
  const distChunks = [];
  for (let c = 0; c < chunks; ++c) {
    const win = tokens.slice(c * ctx, (c + 1) * ctx);
    if (win.length < ctx) break;
    win[0] = model.tokens.bos;
    const first = ctx >> 1;
    const input = win.map((t, i) => i >= first && i < ctx - 1
        ? [t, {generateNext: {probabilities: true, options: {temperature: 1, topK: 0, topP: 1, minP: 0}}}]
        : t);
    await seq.clearHistory();
    const out = await seq.controlledEvaluate(input);
    for (let i = first; i < ctx - 1; ++i) {
      const probs = out[i].next.probabilities;
      const p = probs.get(win[i + 1]) ?? 0;
      nll.push(-Math.log(p));
      if (distOut) {
        const row = new Float32Array(nVocab);
        for (const [tok, pr] of probs) row[tok] = pr;
        distChunks.push(Buffer.from(row.buffer));
      }
    }
  }
  if (distOut) fs.writeFileSync(distOut, Buffer.concat(distChunks));
  const mean = nll.reduce((a, b) => a + b, 0) / nll.length;
  process.stdout.write(JSON.stringify({ppl: Math.exp(mean), n: nll.length, nll}));
} else {
  console.error(`unknown command '${cmd}'`);
  process.exit(2);
}
await model.dispose();
