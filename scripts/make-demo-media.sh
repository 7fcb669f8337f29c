#!/usr/bin/env bash
# Makes the demo titles served from static/media/: small H.264 MP4s whose
# durations match the built-in catalog exactly, each with its own timeline
# (mm:ss.ff, ff = frame within the second) burned in, so a viewer can see at a
# glance where playback resumed.
#
# Usage: scripts/make-demo-media.sh [OUT_DIR]   (default: static/media)
# Needs ffmpeg with libx264 and the DejaVu fonts; installs them on Debian when
# run as root and they are missing.
set -euo pipefail

cd "$(dirname "$0")/.."
out_dir=${1:-static/media}
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
mono=/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf

if ! command -v ffmpeg >/dev/null || [[ ! -f $font || ! -f $mono ]]; then
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y ffmpeg fonts-dejavu-core
fi

# 15 fps with a keyframe every 2 s keeps files tiny while seeks stay quick;
# yuv420p + main profile + faststart is what every browser plays progressively.
fps=15
encode=(-c:v libx264 -preset slow -profile:v main -pix_fmt yuv420p -crf 30
  -r "$fps" -g $((fps * 2)) -movflags +faststart -an)

# drawtext expansions; `\:` escapes the argument separator inside %{...}.
timecode="%{eif\:floor(t/60)\:d\:2}\:%{eif\:mod(floor(t)\,60)\:d\:2}.%{eif\:mod(n\,$fps)\:d\:2}"

# make ID TITLE SECONDS BACKGROUND [MOTION]
#   BACKGROUND is a lavfi source at 640x360; MOTION is an optional filter chain
#   from [bg] to [moving]. drawbox cannot animate, so the progress bar is a strip
#   slid in by overlay, whose x is evaluated on every frame.
make() {
  local id=$1 title=$2 seconds=$3 background=$4 motion=${5:-'[bg]null[moving]'}
  local graph="$background[bg];$motion;color=c=white@0.8:s=640x6:r=$fps[bar]"
  graph+=";[moving][bar]overlay=x=(t/$seconds-1)*W:y=H-h:shortest=1"
  graph+=",drawtext=fontfile=$font:text='$title':x=24:y=20:fontsize=28:fontcolor=white:box=1:boxcolor=black@0.5:boxborderw=8"
  graph+=",drawtext=fontfile=$mono:text='$timecode':x=(w-tw)/2:y=(h-th)/2:fontsize=72:fontcolor=white:box=1:boxcolor=black@0.6:boxborderw=16"
  ffmpeg -hide_banner -loglevel error -y -filter_complex "$graph" -t "$seconds" \
    "${encode[@]}" -metadata title="$title" "$out_dir/$id.mp4"
}

mkdir -p "$out_dir"
make countdown "Countdown" 60 "color=c=0x5a1a1a:s=640x360:r=$fps" \
  "[bg]drawtext=fontfile=$mono:text='%{eif\\:ceil(60-t)\\:d\\:2} s left':x=w-tw-24:y=20:fontsize=28:fontcolor=0xffd0a0[moving]"
# A dot sweeps round the face once a minute, like a second hand.
make clock "The Clock" 120 "color=c=0x16324f:s=640x360:r=$fps" \
  "color=c=0x9fd3ff:s=16x16:r=$fps[dot];[bg][dot]overlay=x=(W-w)/2+250*sin(2*PI*t/60):y=(H-h)/2-140*cos(2*PI*t/60)[moving]"
make testcard "Test Card" 90 "smptehdbars=s=640x360:r=$fps"

# Night Shift, one season of three short episodes, each with its own sky.
# Arrival: headlights cross a blue dusk.
make night-shift-s1e1 "Night Shift S1E1 · Arrival" 20 "color=c=0x1f3a5f:s=640x360:r=$fps" \
  "color=c=0xfff2a8:s=60x10:r=$fps,drawbox=x=18:y=0:w=24:h=10:color=0x1f3a5f:t=fill[lights];[bg][lights]overlay=x=-60+(W+60)*t/20:y=H-70[moving]"
# Midnight: a moon drifts over a dark indigo sky.
make night-shift-s1e2 "Night Shift S1E2 · Midnight" 20 "color=c=0x120a2a:s=640x360:r=$fps" \
  "color=c=0xe8e8f0:s=48x48:r=$fps,format=yuva420p,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':a='if(lt(hypot(X-24,Y-24),22),255,0)'[moon];[bg][moon]overlay=x=40+520*t/20:y=90-30*sin(PI*t/20)[moving]"
# Dawn: the sky warms from the horizon up while the sun rises.
make night-shift-s1e3 "Night Shift S1E3 · Dawn" 20 \
  "color=c=black:s=640x360:r=$fps,format=gbrp,geq=r='30+190*(T/20)*(0.3+0.7*Y/H)':g='20+110*(T/20)*(0.2+0.8*Y/H)':b='70+30*(T/20)*(1-Y/H)'" \
  "color=c=0xffb347:s=64x64:r=$fps,format=yuva420p,geq=lum='lum(X,Y)':cb='cb(X,Y)':cr='cr(X,Y)':a='if(lt(hypot(X-32,Y-32),30),255,0)'[sun];[bg][sun]overlay=x=W-150:y=H-40-110*t/20:format=auto[moving]"

for f in "$out_dir"/*.mp4; do
  printf '%s %ss %s bytes\n' "$f" \
    "$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$f")" "$(stat -c %s "$f")"
done
