// The webcam: one stream at a time for the whole page, a camera picker, and square frames as JPEG files.

let active = null;

export function cameraProblem() {
  if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) return null;
  if (!window.isSecureContext) {
    return "The browser allows the webcam only on https or on localhost. Open Teachbox at http://127.0.0.1 or put it behind https.";
  }
  return "This browser offers no webcam access. Add images with the file picker instead.";
}

function explain(error) {
  if (error.name === "NotAllowedError") return "The browser was not allowed to use the webcam. Allow camera access for this page and try again.";
  if (error.name === "NotFoundError" || error.name === "OverconstrainedError") return "No webcam was found. Connect one, or add images with the file picker.";
  if (error.name === "NotReadableError") return "The webcam is busy in another program. Close it there and try again.";
  return `The webcam could not start (${error.message}).`;
}

export class Camera {
  /** `video` shows the stream; `select` lists the cameras; `onStop` runs whenever the stream ends. */
  constructor(video, select, onStop = () => {}) {
    this.video = video;
    this.select = select;
    this.onStop = onStop;
    this.stream = null;
    this.canvas = document.createElement("canvas");
    select.addEventListener("change", () => this.start(select.value).catch(() => {}));
  }

  get running() {
    return this.stream !== null;
  }

  async start(deviceId = "") {
    const problem = cameraProblem();
    if (problem) throw new Error(problem);
    if (active && active !== this) active.stop();
    this.releaseTracks();
    const video = deviceId ? { deviceId: { exact: deviceId } } : { width: { ideal: 640 }, height: { ideal: 480 } };
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({ video, audio: false });
    } catch (error) {
      this.stop();
      throw new Error(explain(error));
    }
    active = this;
    this.video.srcObject = this.stream;
    await this.video.play().catch(() => {});
    await this.listCameras();
  }

  async listCameras() {
    const devices = (await navigator.mediaDevices.enumerateDevices()).filter((d) => d.kind === "videoinput");
    const current = this.stream?.getVideoTracks()[0]?.getSettings().deviceId;
    const options = devices.map((d, i) => new Option(d.label || `Camera ${i + 1}`, d.deviceId, false, d.deviceId === current));
    this.select.replaceChildren(...options);
  }

  releaseTracks() {
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    this.stream = null;
  }

  stop() {
    const wasRunning = this.running;
    this.releaseTracks();
    this.video.srcObject = null;
    if (active === this) active = null;
    if (wasRunning) this.onStop();
  }

  /** The centre square of the current frame, scaled to `size` pixels, as a JPEG File. */
  async grab(size = 320, name = "webcam.jpg") {
    const { videoWidth: w, videoHeight: h } = this.video;
    if (!this.running || !w || !h) return null;
    const side = Math.min(w, h);
    this.canvas.width = this.canvas.height = size;
    this.canvas.getContext("2d").drawImage(this.video, (w - side) / 2, (h - side) / 2, side, side, 0, 0, size, size);
    const blob = await new Promise((resolve) => this.canvas.toBlob(resolve, "image/jpeg", 0.9));
    return blob ? new File([blob], name, { type: "image/jpeg" }) : null;
  }
}
