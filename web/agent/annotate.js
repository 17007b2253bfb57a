// Drawing on an evidence picture (arrows, circles, text) in a canvas; the result is
// saved as a new JPEG beside the original, which stays untouched.

import { byId } from '/common/ui.js';

const RED = '#e00000';

export class Annotator {
  constructor() {
    this.canvas = byId('annotate-canvas');
    this.ctx = this.canvas.getContext('2d');
    this.image = null;
    this.shapes = [];
    this.start = null;
    this.onSave = null;
    this.canvas.addEventListener('pointerdown', (ev) => { this.start = this.at(ev); });
    this.canvas.addEventListener('pointerup', (ev) => this.finish(this.at(ev)));
    byId('annotate-undo').addEventListener('click', () => { this.shapes.pop(); this.draw(); });
    byId('annotate-cancel').addEventListener('click', () => this.close());
    byId('annotate-save').addEventListener('click', () => this.save());
    // Keyboard: Enter puts the current tool at the centre (for those who cannot drag).
    this.canvas.addEventListener('keydown', (ev) => {
      if (ev.key !== 'Enter') return;
      const c = { x: this.canvas.width / 2, y: this.canvas.height / 2 };
      this.start = { x: c.x - this.canvas.width / 8, y: c.y - this.canvas.height / 8 };
      this.finish(c);
    });
  }

  tool() {
    return document.querySelector('input[name="annotate-tool"]:checked').value;
  }

  at(ev) {
    const r = this.canvas.getBoundingClientRect();
    return { x: (ev.clientX - r.left) * (this.canvas.width / r.width),
      y: (ev.clientY - r.top) * (this.canvas.height / r.height) };
  }

  /** Open on an image Blob; `onSave(blob)` receives the annotated JPEG. */
  async open(blob, onSave) {
    this.image = await createImageBitmap(blob);
    this.canvas.width = this.image.width;
    this.canvas.height = this.image.height;
    this.shapes = [];
    this.onSave = onSave;
    byId('annotate').hidden = false;
    this.draw();
    this.canvas.focus();
  }

  close() {
    byId('annotate').hidden = true;
    this.image = null;
  }

  finish(end) {
    if (!this.start) return;
    const tool = this.tool();
    const text = byId('annotate-text').value.trim();
    if (tool === 'text' && !text) { this.start = null; return; }
    this.shapes.push({ tool, from: this.start, to: end, text });
    this.start = null;
    this.draw();
  }

  draw() {
    const { ctx, canvas } = this;
    if (!this.image) return;
    ctx.drawImage(this.image, 0, 0);
    const width = Math.max(3, canvas.width / 200);
    ctx.strokeStyle = RED;
    ctx.fillStyle = RED;
    ctx.lineWidth = width;
    for (const s of this.shapes) {
      if (s.tool === 'arrow') {
        const angle = Math.atan2(s.to.y - s.from.y, s.to.x - s.from.x);
        const head = width * 6;
        ctx.beginPath();
        ctx.moveTo(s.from.x, s.from.y);
        ctx.lineTo(s.to.x, s.to.y);
        ctx.stroke();
        ctx.beginPath();
        ctx.moveTo(s.to.x, s.to.y);
        ctx.lineTo(s.to.x - head * Math.cos(angle - 0.4), s.to.y - head * Math.sin(angle - 0.4));
        ctx.lineTo(s.to.x - head * Math.cos(angle + 0.4), s.to.y - head * Math.sin(angle + 0.4));
        ctx.closePath();
        ctx.fill();
      } else if (s.tool === 'circle') {
        const r = Math.hypot(s.to.x - s.from.x, s.to.y - s.from.y);
        ctx.beginPath();
        ctx.arc(s.from.x, s.from.y, Math.max(r, width * 4), 0, 2 * Math.PI);
        ctx.stroke();
      } else {
        ctx.font = `${Math.round(canvas.height / 18)}px sans-serif`;
        ctx.fillText(s.text, s.to.x, s.to.y);
      }
    }
  }

  async save() {
    const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, 'image/jpeg', 0.9));
    const done = this.onSave;
    this.close();
    if (done && blob) await done(blob);
  }
}
