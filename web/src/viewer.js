// The 3D model: three.js loads the GLB the manifest points to; a click on a part names its entity;
// the live overlay colours parts and pins labels where the server says.
import * as THREE from "three";
import { GLTFLoader } from "three/examples/jsm/loaders/GLTFLoader.js";
import { OrbitControls } from "three/examples/jsm/controls/OrbitControls.js";

export class Viewer {
  constructor(canvas, labels, onPick) {
    this.canvas = canvas;
    this.labels = labels;
    this.onPick = onPick;
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: true, alpha: true, preserveDrawingBuffer: true });
    this.renderer.setClearColor(0x000000, 0);  // the page's gradient shows behind the model
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.scene = new THREE.Scene();
    this.camera = new THREE.PerspectiveCamera(45, 1, 0.001, 1000);
    this.controls = new OrbitControls(this.camera, canvas);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x667788, 2.2));
    const sun = new THREE.DirectionalLight(0xffffff, 1.6);
    sun.position.set(1, 2, 1.5);
    this.scene.add(sun);
    this.byMesh = new Map();      // GLB node name → three.js object
    this.meshToNode = {};         // GLB node name → entity id
    this.annotations = [];
    this.selected = null;
    this.raycaster = new THREE.Raycaster();
    let down = null;
    canvas.addEventListener("pointerdown", (e) => (down = [e.clientX, e.clientY]));
    canvas.addEventListener("pointerup", (e) => {
      if (down && Math.hypot(e.clientX - down[0], e.clientY - down[1]) < 4) this.pick(e);
    });
    // drawn only when something changed (the camera moved, a part was picked or coloured, the
    // canvas resized): an idle dashboard left open all day costs no CPU
    this.frames = 0;
    this.pending = false;
    this.controls.addEventListener("change", () => this.requestRender());
    new ResizeObserver(() => this.resize()).observe(canvas);
    this.resize();
  }

  requestRender() {
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.frame();
    });
  }

  async load(url, manifest) {
    const gltf = await new GLTFLoader().loadAsync(url);
    if (this.model) this.scene.remove(this.model);
    this.model = gltf.scene;
    this.meshToNode = manifest.mesh_to_node_map || {};
    this.byMesh.clear();
    this.model.traverse((o) => {
      const name = o.userData.name;  // the GLB's own node name (three.js sanitizes o.name)
      if (name && name in this.meshToNode) this.byMesh.set(name, o);
      if (o.isMesh) o.material = o.material.clone();  // parts that share a material are coloured apart
    });
    this.scene.add(this.model);
    this.frameModel();
    this.requestRender();
    return this.byMesh.size;
  }

  frameModel() {
    const box = new THREE.Box3().setFromObject(this.model);
    const size = box.getSize(new THREE.Vector3()).length() || 1;
    const center = box.getCenter(new THREE.Vector3());
    this.camera.near = size / 1000;
    this.camera.far = size * 100;
    this.camera.position.copy(center).add(new THREE.Vector3(0.6, 0.5, 0.8).multiplyScalar(size));
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(center);
    this.controls.update();
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.canvas;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.requestRender();
  }

  pick(event) {
    if (!this.model) return;
    const rect = this.canvas.getBoundingClientRect();
    const pointer = new THREE.Vector2(((event.clientX - rect.left) / rect.width) * 2 - 1,
                                      -((event.clientY - rect.top) / rect.height) * 2 + 1);
    this.raycaster.setFromCamera(pointer, this.camera);
    const hit = this.raycaster.intersectObject(this.model, true)[0];
    for (let o = hit?.object; o; o = o.parent) {
      const name = o.userData.name;
      if (name && this.meshToNode[name]) return this.onPick(this.meshToNode[name]);
    }
  }

  meshOf(entityId) {
    return Object.keys(this.meshToNode).find((m) => this.meshToNode[m] === entityId);
  }

  highlight(entityId) {
    if (this.selected) paint(this.selected, (m) => m.emissive?.setHex(0x000000));
    this.selected = this.byMesh.get(this.meshOf(entityId)) || null;
    if (this.selected) paint(this.selected, (m) => m.emissive?.setHex(0x1d4ed8));
    this.requestRender();
  }

  applyOverlay(overlay) {
    for (const mesh of overlay.meshOverlays || []) {
      const object = this.byMesh.get(mesh.meshName);
      if (object) paint(object, (m) => m.color?.set(mesh.color));
    }
    this.annotations = (overlay.annotations || []).filter((a) => a.position);
    this.drawLabels();
    this.requestRender();
  }

  // where a part is on the screen, in page pixels (tests click there, as a person would)
  screenPositionOf(meshName) {
    const object = this.byMesh.get(meshName);
    if (!object) return null;
    const point = new THREE.Box3().setFromObject(object).getCenter(new THREE.Vector3()).project(this.camera);
    const rect = this.canvas.getBoundingClientRect();
    return { x: rect.left + ((point.x + 1) / 2) * rect.width, y: rect.top + ((1 - point.y) / 2) * rect.height };
  }

  drawLabels() {
    const rect = this.canvas.getBoundingClientRect();
    while (this.labels.children.length > this.annotations.length) this.labels.lastChild.remove();
    this.annotations.forEach((a, i) => {
      let div = this.labels.children[i];
      if (!div) {
        div = document.createElement("div");
        div.className = "annotation";
        div.innerHTML = '<span class="status"></span><span class="text"></span>';
        this.labels.append(div);
      }
      const p = new THREE.Vector3(...a.position).project(this.camera);
      div.dataset.metric = a.metric;
      div.dataset.status = a.status;
      div.style.left = `${((p.x + 1) / 2) * rect.width}px`;
      div.style.top = `${((1 - p.y) / 2) * rect.height}px`;
      div.firstChild.style.background = `var(--${a.status})`;
      const text = `${a.label}: ${Number(a.value).toFixed(2)}${a.unit ? " " + a.unit : ""}`;
      if (div.lastChild.textContent !== text) div.lastChild.textContent = text;
    });
  }

  frame() {
    this.frames += 1;
    this.renderer.render(this.scene, this.camera);
    if (this.annotations.length) this.drawLabels();
  }
}

function paint(object, fn) {
  object.traverse((o) => { if (o.isMesh) fn(o.material); });
}
