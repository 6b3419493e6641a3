#!/usr/bin/env bash
# Regenerates the bundled speech signals in sims/signals/{train,test} (needs espeak-ng and sox;
# users never need them: the generated FLAC files are committed). Train and test use disjoint
# voices and sentences.
set -euo pipefail
out=$(dirname "$0")/../sims/signals
mkdir -p "$out/train" "$out/test"
say() {  # split voice index text
  local tmp; tmp=$(mktemp --suffix=.wav)
  espeak-ng -v "$2" -s 150 -w "$tmp" "$4"
  sox "$tmp" -r 16000 -c 1 -b 16 "$out/$1/speech_$3.flac" norm -3
  rm -f "$tmp"
}
say train en-us+m1 01 "The quick brown fox jumps over the lazy dog while the band plays on in the hall."
say train en-gb+f2 02 "Microphones placed around the room record the voice at slightly different times."
say train en-gb-scotland+m3 03 "Please bring the red folder from the second shelf before the meeting starts."
say train en-us+f4 04 "A gentle breeze moved the curtains as the evening light faded over the harbour."
say train en-029+m4 05 "Seven engineers measured the echo of the empty concert hall with a single clap."
say train en-gb-x-rp+f1 06 "Turn left at the old bakery, then walk straight on until you see the blue gate."
say train en-us-nyc+m2 07 "Numbers like forty two, one hundred and nine, and three thousand were read aloud."
say train en-gb-x-gbclan+f3 08 "The weather report promised rain in the north and bright sunshine in the south."
say test en-gb-x-gbcwmd+m5 01 "Every morning the train to the city leaves at a quarter past eight from platform four."
say test en-us+f5 02 "She sorted the letters by colour and placed them carefully into a wooden box."
say test en-gb+m6 03 "Loud music from the neighbours kept the whole street awake until after midnight."
say test en-gb-scotland+f4 04 "Could you describe the shape of the island you saw from the top of the hill?"
