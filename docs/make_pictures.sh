#!/usr/bin/env bash
# Redraw every picture in README.md and docs/ from the commands that make them (run from the repository root).
#   docs/make_pictures.sh            demo pictures: segment matrices, loss curve, search matches (~3 min on 2 cores)
#   docs/make_pictures.sh --video    also the video front end's pictures (needs ../shared/data/soccertrack)
#   docs/make_pictures.sh --tables   also Table V's retrieval plot (trains 12 methods, seed 0: ~13 min on 2 cores)
# The demo run goes to runs/skillcorner_2417 (removed first, so the pictures come from a fresh run).
set -euo pipefail
cd "$(dirname "$0")/.."
video=0 tables=0
for arg in "$@"; do
  case "$arg" in
    --video) video=1 ;;
    --tables) tables=1 ;;
    -h|--help) sed -n '2,6p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "make_pictures.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
run=runs/skillcorner_2417
rm -rf "$run"
trajsv demo --out "$run"
cp "$run/plots/segment_matrices.png" docs/segment_matrices.png
cp "$run/train/plots/loss.png" docs/demo_loss.png
trajsv index --embeddings "$run/train/embeddings/test"
trajsv search --index "$run/train/embeddings/test/index" --video-id 302 -k 3 --plot docs/search_matches.png
if [ "$video" = 1 ]; then
  clips=../shared/data/soccertrack/raw_clips
  rm -rf runs/video
  trajsv preprocess "$clips/left_camera.mp4" --landmarks "$clips/left_keypoints.xml" --out runs/video/store \
    --plots runs/video/pictures
  python -c "import cv2; cv2.imwrite('docs/video_tracks.jpg', cv2.imread('runs/video/pictures/tracks_frame.png'), \
[cv2.IMWRITE_JPEG_QUALITY, 85])"
  cp runs/video/pictures/trajectories.png docs/video_trajectories.png
fi
if [ "$tables" = 1 ]; then
  trajsv evaluate ablations --seeds 0
  cp runs/experiments/ablations/retrieval.png docs/table5_retrieval.png
fi
echo "pictures redrawn in docs/"
