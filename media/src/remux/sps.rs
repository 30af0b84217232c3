//! Just enough of the H.264 sequence parameter set (ITU-T H.264 7.3.2.1.1) to report the picture size
//! for stream metadata. Failure is not an error for remuxing, so this returns `Option`.

use super::bits::BitReader;

/// profile_idc values whose SPS carries chroma_format_idc and the other high-profile fields.
const HIGH_PROFILES: [u32; 13] = [100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135];

/// Cropped picture width and height in pixels from an SPS NAL unit (header byte included).
pub fn dimensions(nal: &[u8]) -> Option<(u32, u32)> {
    let rbsp = unescape(nal.get(1..)?);
    let mut r = BitReader::new(&rbsp);
    let profile_idc = r.bits(8)?;
    r.skip(16)?; // constraint_set flags, level_idc
    r.ue()?; // seq_parameter_set_id
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    if HIGH_PROFILES.contains(&profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        r.ue()?; // bit_depth_luma_minus8
        r.ue()?; // bit_depth_chroma_minus8
        r.bit()?; // qpprime_y_zero_transform_bypass_flag
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    r.ue()?; // log2_max_frame_num_minus4
    match r.ue()? {
        0 => {
            r.ue()?; // log2_max_pic_order_cnt_lsb_minus4
        }
        1 => {
            r.bit()?; // delta_pic_order_always_zero_flag
            r.se()?; // offset_for_non_ref_pic
            r.se()?; // offset_for_top_to_bottom_field
            let cycle = r.ue()?;
            // The spec caps num_ref_frames_in_pic_order_cnt_cycle at 255; more is garbage.
            if cycle > 255 {
                return None;
            }
            for _ in 0..cycle {
                r.se()?;
            }
        }
        _ => {}
    }
    r.ue()?; // max_num_ref_frames
    r.bit()?; // gaps_in_frame_num_value_allowed_flag
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = u64::from(r.bit()?);
    if frame_mbs_only == 0 {
        r.bit()?; // mb_adaptive_frame_field_flag
    }
    r.bit()?; // direct_8x8_inference_flag
    let (mut left, mut right, mut top, mut bottom) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        left = r.ue()?.into();
        right = r.ue()?.into();
        top = r.ue()?.into();
        bottom = r.ue()?.into();
    }
    // CropUnitX/CropUnitY, H.264 equations 7-19..7-22.
    let (sub_width, sub_height) = match chroma_format_idc {
        1 => (2, 2),
        2 => (2, 1),
        _ => (1, 1),
    };
    let (crop_x, crop_y) = if chroma_format_idc == 0 || separate_colour_plane {
        (1, 2 - frame_mbs_only)
    } else {
        (sub_width, sub_height * (2 - frame_mbs_only))
    };
    let width = (width_mbs * 16).checked_sub(crop_x * (left + right))?;
    let height =
        ((2 - frame_mbs_only) * height_map_units * 16).checked_sub(crop_y * (top + bottom))?;
    Some((u32::try_from(width).ok()?, u32::try_from(height).ok()?))
}

/// scaling_list() syntax, H.264 7.3.2.1.1.1: only walked to reach the fields after it.
fn skip_scaling_list(r: &mut BitReader<'_>, size: usize) -> Option<()> {
    let mut last: i64 = 8;
    let mut next: i64 = 8;
    for _ in 0..size {
        if next != 0 {
            let delta = i64::from(r.se()?);
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Some(())
}

/// Removes emulation_prevention_three_byte (H.264 7.4.1): 00 00 03 -> 00 00. Only run on sequence
/// headers, so the allocation is off the hot path.
fn unescape(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        zeros = if b == 0 { zeros + 1 } else { 0 };
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .filter_map(|i| s.get(i..i + 2))
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect()
    }

    #[test]
    fn x264_high_profile_320x240() {
        let sps = hex("6764000dacd94141fb0110000003001000000303c0f1429960");
        assert_eq!(dimensions(&sps), Some((320, 240)));
    }

    #[test]
    fn x264_main_profile_1080p_with_cropping() {
        let sps = hex("674d4028eca03c0113f2e022000003000200000300781e30632c");
        assert_eq!(dimensions(&sps), Some((1920, 1080)));
    }

    #[test]
    fn truncated_sps_is_none() {
        let sps = hex("6764000dacd94141fb0110000003001000000303c0f1429960");
        for len in 0..8 {
            assert_eq!(dimensions(&sps[..len]), None);
        }
    }
}
