"""The endpoint's web page: drop or pick a dog photo, see the top-5 breeds with bars. One file, no external assets."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>dogbreed · __ENDPOINT__</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<style>
 body{font-family:system-ui,sans-serif;max-width:760px;margin:2rem auto;padding:0 1rem;color:#222}
 h1{font-size:1.4rem} #drop{border:2px dashed #888;border-radius:12px;padding:2rem;text-align:center;cursor:pointer}
 #drop.over{background:#eef5ff;border-color:#36c} #preview{max-width:100%;max-height:320px;margin-top:1rem;display:none}
 .row{display:flex;align-items:center;margin:.35rem 0} .name{width:14rem} .bar{height:1.1rem;background:#36c;border-radius:4px}
 .pct{margin-left:.5rem;font-variant-numeric:tabular-nums} .nodog{font-weight:bold} .uncertain{color:#a60} #error{color:#b00} #key{display:none;margin:.5rem 0}
</style></head>
<body>
<h1>dogbreed endpoint <code>__ENDPOINT__</code></h1>
<p>Drop a dog photo below, or click to pick one. The top 5 breeds appear with their probabilities.</p>
<input id="key" type="password" placeholder="API key">
<div id="drop">Drop a photo here or click to choose<input id="file" type="file" accept="image/*" hidden></div>
<img id="preview" alt="your photo">
<div id="error" role="alert"></div>
<div id="results" aria-live="polite"></div>
<script>
const needsKey = __NEEDS_KEY__;
const drop = document.getElementById('drop'), file = document.getElementById('file');
const results = document.getElementById('results'), errorBox = document.getElementById('error');
if (needsKey) document.getElementById('key').style.display = 'block';
drop.addEventListener('click', () => file.click());
drop.addEventListener('dragover', e => { e.preventDefault(); drop.classList.add('over'); });
drop.addEventListener('dragleave', () => drop.classList.remove('over'));
drop.addEventListener('drop', e => { e.preventDefault(); drop.classList.remove('over'); if (e.dataTransfer.files[0]) classify(e.dataTransfer.files[0]); });
file.addEventListener('change', () => { if (file.files[0]) classify(file.files[0]); });
async function classify(f) {
  errorBox.textContent = ''; results.textContent = 'Classifying…';
  const img = document.getElementById('preview'); img.src = URL.createObjectURL(f); img.style.display = 'block';
  const headers = {'Content-Type': f.type || 'application/x-image'};
  if (needsKey) headers['X-Api-Key'] = document.getElementById('key').value;
  try {
    const r = await fetch('invocations?top_k=5', {method: 'POST', headers, body: f});
    const data = await r.json();
    if (!r.ok) { results.textContent = ''; errorBox.textContent = data.error || ('HTTP ' + r.status); return; }
    results.textContent = '';
    if (data.dog === false) {
      const none = document.createElement('p'); none.className = 'nodog';
      none.textContent = 'No dog found (dog score ' + data.dog_score.toFixed(3) + ', below ' + data.dog_threshold.toFixed(3) + ')';
      results.append(none); return;
    }
    if (data.uncertain) {
      const note = document.createElement('p'); note.className = 'uncertain';
      note.textContent = 'Uncertain: the model is not sure of this breed; its best guesses:';
      results.append(note);
    }
    for (const p of data.predictions) {
      const row = document.createElement('div'); row.className = 'row';
      const name = document.createElement('span'); name.className = 'name'; name.textContent = p.label;
      const bar = document.createElement('div'); bar.className = 'bar'; bar.style.width = (p.probability * 300) + 'px';
      const pct = document.createElement('span'); pct.className = 'pct'; pct.textContent = (p.probability * 100).toFixed(1) + '%';
      row.append(name, bar, pct); results.append(row);
    }
  } catch (e) { results.textContent = ''; errorBox.textContent = 'request failed: ' + e; }
}
</script>
</body></html>
"""
