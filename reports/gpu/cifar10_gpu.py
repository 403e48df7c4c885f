"""CIFAR-10 on one GPU through dmkd's library API: teacher -> in-project DDPM at 32x32 -> synthetic stores at several
guidance scales -> KD of a student on each -> accuracy on the real test split. Prints one JSON line per stage."""
import argparse, json, os, time
import torch
from dmkd.data import load_dataset
from dmkd.distill import KDConfig, distill_student
from dmkd.generators import DDPMConfig, get_ddpm
from dmkd.synth import load_store, synthesize
from dmkd.train import TrainConfig, get_teacher, tensor_digest

p = argparse.ArgumentParser()
p.add_argument('--root'); p.add_argument('--out')
p.add_argument('--teacher', default='resnet34'); p.add_argument('--teacher-epochs', type=int, default=20)
p.add_argument('--student', default='resnet20'); p.add_argument('--kd-epochs', type=int, default=40)
p.add_argument('--ddpm-steps', type=int, default=6000); p.add_argument('--n-per-class', type=int, default=2000)
p.add_argument('--scales', default='2,1,4')
a = p.parse_args()
log = open(os.path.join(a.out, 'cifar_gpu.jsonl'), 'a')
def emit(**kw): print(json.dumps(kw), flush=True); log.write(json.dumps(kw) + '\n'); log.flush()
emit(stage='device', gpu=torch.cuda.get_device_name(), torch=torch.__version__)

t0 = time.time(); test = load_dataset('imagefolder', 'test', root=a.root); train = load_dataset('imagefolder', 'train', root=a.root)
emit(stage='decode', seconds=round(time.time() - t0, 1), train=len(train), test=len(test))
t0 = time.time()
tnet, tmeta = get_teacher(TrainConfig(dataset='imagefolder', arch=a.teacher, epochs=a.teacher_epochs, batch_size=256, lr=0.1), root=a.root, progress=False)
emit(stage='teacher', arch=a.teacher, epochs=a.teacher_epochs, acc=tmeta.get('accuracy'), seconds=round(time.time() - t0, 1))

G = DDPMConfig(dataset='imagefolder', native=False, block_out_channels=(64, 128, 128), layers_per_block=2, steps=a.ddpm_steps,
               batch_size=256, lr=5e-4, ema_decay=0.999)
t0 = time.time(); gen = get_ddpm(G, root=a.root, progress=False)
emit(stage='ddpm', steps=a.ddpm_steps, seconds=round(time.time() - t0, 1), final_loss=gen.meta.get('final_loss'))

for s in [float(x) for x in a.scales.split(',')]:
    t0 = time.time()
    folder = synthesize('imagefolder', 'ddpm', guidance_scale=s, num_steps=25, sampler='ddim', n_per_class=a.n_per_class, root=a.root,
                        progress=False, gen=gen)
    syn = time.time() - t0; images = load_store(folder)
    t1 = time.time()
    _, res = distill_student(KDConfig(student=a.student, epochs=a.kd_epochs, batch_size=256, lr=0.1), tnet, images, test, 'cuda', progress=False)
    emit(stage='kd', guidance_scale=s, num_steps=25, sampler='ddim', n_images=len(images), synthesis_seconds=round(syn, 1),
         kd_seconds=round(time.time() - t1, 1), kd_images_per_s=res['images_per_s'], precision=res['precision'],
         student=a.student, student_best_acc=res['best_acc'], student_last_acc=res['last_acc'], teacher_acc=tmeta.get('accuracy'))
