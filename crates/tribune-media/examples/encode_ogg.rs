//! Encodes a WAV file as mono 48 kHz Ogg Opus: `cargo run -p tribune-media --example encode_ogg
//! -- IN.wav OUT.ogg [BITRATE]`. Made `assets/demo-speech.ogg` from an espeak-ng recording.

use std::io::BufWriter;

use tribune_media::{read_wav, Encoder, OggOpusWriter, FRAME_SAMPLES};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(input), Some(output)) = (args.get(1), args.get(2)) else {
        return Err("usage: encode_ogg IN.wav OUT.ogg [BITRATE]".into());
    };
    let bitrate: u32 = args.get(3).map_or(Ok(24_000), |b| b.parse())?;
    let pcm = read_wav(&std::fs::read(input)?)?.to_mono_48k();
    let mut encoder = Encoder::new(bitrate)?;
    let file = BufWriter::new(std::fs::File::create(output)?);
    let mut writer = OggOpusWriter::new(file, 0x7472_6962)?;
    for chunk in pcm.chunks(FRAME_SAMPLES) {
        let mut frame = [0i16; FRAME_SAMPLES];
        frame[..chunk.len()].copy_from_slice(chunk);
        writer.write_packet(&encoder.encode_vec(&frame)?)?;
    }
    writer.finish()?;
    Ok(())
}
