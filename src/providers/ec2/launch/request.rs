//! The one function that puts a cell's launch fields on a RunInstances request ([`apply`]), given the
//! image's root device name that only the preflight knows.

use aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, HttpTokensState, IamInstanceProfileSpecification,
    InstanceMetadataEndpointState, InstanceMetadataOptionsRequest, InstanceMetadataTagsState,
    InstanceNetworkInterfaceSpecification, Placement,
};

use super::{device_name, Ebs, Ec2Launch, HttpTokens, Imds, ImdsEndpoint, RootVolume};

/// What [`apply`] can't put on a request without the image, as a lowercase fragment.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("a root volume needs the image's root device name, which is not known")]
    RootDeviceUnknown,
    #[error("volumes[{index}] is on {device}, the image's root device: set root_volume for that volume")]
    VolumeOnRoot { index: usize, device: String },
}

/// Puts `launch`, the subnet and the security groups on a RunInstances request.
///
/// It sets SubnetId, SecurityGroupIds, NetworkInterfaces, BlockDeviceMappings, MetadataOptions,
/// IamInstanceProfile and Placement, each of them, replacing what `req` had: the caller sets none of
/// them. With `public_ip` set, EC2 takes the address choice only on a network interface, and refuses a
/// request with both a network interface and a top-level subnet or groups: the subnet and the groups
/// then go on `NetworkInterfaces[0]` and nowhere else.
///
/// `root_device_name` is the image's (preflight's `ImageFacts::root_device_name`): the root volume is
/// mapped there, and an extra volume may not use it. A root volume without it is an error.
///
/// The boot mode changes nothing here: RunInstances takes none (the image's boot mode and the instance
/// type's decide), so it is a preflight check and a fact read back from the instance.
pub fn apply(
    req: RunInstancesFluentBuilder,
    launch: &Ec2Launch,
    subnet: Option<&str>,
    security_groups: &[String],
    root_device_name: Option<&str>,
) -> Result<RunInstancesFluentBuilder, ApplyError> {
    let mappings = block_device_mappings(launch, root_device_name)?;
    let groups = (!security_groups.is_empty()).then(|| security_groups.to_vec());
    let req = match launch.public_ip {
        None => {
            req.set_network_interfaces(None).set_subnet_id(subnet.map(str::to_string)).set_security_group_ids(groups)
        }
        Some(public_ip) => {
            let interface = InstanceNetworkInterfaceSpecification::builder()
                .device_index(0)
                .associate_public_ip_address(public_ip)
                .set_subnet_id(subnet.map(str::to_string))
                .set_groups(groups)
                .build();
            req.set_network_interfaces(Some(vec![interface])).set_subnet_id(None).set_security_group_ids(None)
        }
    };
    Ok(req
        .set_block_device_mappings((!mappings.is_empty()).then_some(mappings))
        .set_metadata_options(launch.imds.as_ref().and_then(metadata_options))
        .set_iam_instance_profile(launch.iam_instance_profile.as_deref().map(instance_profile))
        .set_placement(placement(launch)))
}

/// The root volume on the image's root device, then the extra volumes on theirs.
fn block_device_mappings(
    launch: &Ec2Launch,
    root_device_name: Option<&str>,
) -> Result<Vec<BlockDeviceMapping>, ApplyError> {
    let mut out = Vec::new();
    if let Some(root) = launch.root_volume.as_ref().map(RootVolume::ebs).filter(|e| !e.is_empty()) {
        let Some(root_device) = root_device_name else {
            return Err(ApplyError::RootDeviceUnknown);
        };
        out.push(BlockDeviceMapping::builder().device_name(root_device).ebs(root.block_device()).build());
    }
    let root_device = root_device_name.map(device_name);
    for (i, volume) in launch.volumes.iter().enumerate() {
        let device = device_name(&volume.device);
        if root_device.as_deref() == Some(device.as_str()) {
            return Err(ApplyError::VolumeOnRoot { index: i, device });
        }
        out.push(BlockDeviceMapping::builder().device_name(device).ebs(volume.ebs().block_device()).build());
    }
    Ok(out)
}

/// A number as the SDK takes it; past `i32::MAX` (which EC2 refuses anyway) it stays there.
fn int(value: u32) -> i32 {
    i32::try_from(value).unwrap_or(i32::MAX)
}

fn metadata_options(imds: &Imds) -> Option<InstanceMetadataOptionsRequest> {
    if imds == &Imds::default() {
        return None;
    }
    Some(
        InstanceMetadataOptionsRequest::builder()
            .set_http_tokens(imds.http_tokens.map(|t| match t {
                HttpTokens::Required => HttpTokensState::Required,
                HttpTokens::Optional => HttpTokensState::Optional,
            }))
            .set_http_put_response_hop_limit(imds.hop_limit.map(i32::from))
            .set_http_endpoint(imds.endpoint.map(|e| match e {
                ImdsEndpoint::Enabled => InstanceMetadataEndpointState::Enabled,
                ImdsEndpoint::Disabled => InstanceMetadataEndpointState::Disabled,
            }))
            .set_instance_metadata_tags(imds.instance_tags.map(|on| {
                if on {
                    InstanceMetadataTagsState::Enabled
                } else {
                    InstanceMetadataTagsState::Disabled
                }
            }))
            .build(),
    )
}

/// An instance profile by ARN when it is one, else by name.
fn instance_profile(profile: &str) -> IamInstanceProfileSpecification {
    let builder = IamInstanceProfileSpecification::builder();
    if profile.starts_with("arn:") {
        builder.arn(profile).build()
    } else {
        builder.name(profile).build()
    }
}

fn placement(launch: &Ec2Launch) -> Option<Placement> {
    if launch.availability_zone.is_none() && launch.placement_group.is_none() {
        return None;
    }
    Some(
        Placement::builder()
            .set_availability_zone(launch.availability_zone.clone())
            .set_group_name(launch.placement_group.clone())
            .build(),
    )
}

impl Ebs<'_> {
    fn block_device(&self) -> EbsBlockDevice {
        EbsBlockDevice::builder()
            .set_volume_size(self.size.map(int))
            .set_volume_type(self.r#type.map(|t| aws_sdk_ec2::types::VolumeType::from(t.as_str())))
            .set_iops(self.iops.map(int))
            .set_throughput(self.throughput.map(int))
            .set_encrypted(self.encrypted)
            .set_kms_key_id(self.kms_key.map(str::to_string))
            .set_delete_on_termination(self.delete_on_termination)
            .build()
    }

    fn is_empty(&self) -> bool {
        self.size.is_none()
            && self.r#type.is_none()
            && self.iops.is_none()
            && self.throughput.is_none()
            && self.encrypted.is_none()
            && self.kms_key.is_none()
            && self.delete_on_termination.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::super::BootMode;
    use super::*;

    fn request() -> RunInstancesFluentBuilder {
        let config = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
            .region(aws_sdk_ec2::config::Region::new("eu-west-1"))
            .build();
        aws_sdk_ec2::Client::from_conf(config).run_instances()
    }

    #[test]
    fn apply_refuses_what_needs_the_image() {
        let launch: Ec2Launch = serde_yaml::from_str("root_volume: {size: 30}").unwrap();
        let err = apply(request(), &launch, None, &[], None).unwrap_err().to_string();
        assert_eq!(err, "a root volume needs the image's root device name, which is not known");
        assert!(apply(request(), &launch, None, &[], Some("/dev/xvda")).is_ok());
        // An empty root volume changes nothing, so it needs no device.
        let empty: Ec2Launch = serde_yaml::from_str("root_volume: {}").unwrap();
        assert!(apply(request(), &empty, None, &[], None).unwrap().get_block_device_mappings().is_none());

        let launch: Ec2Launch = serde_yaml::from_str("volumes: [{device: sda1, size: 8}]").unwrap();
        let err = apply(request(), &launch, None, &[], Some("/dev/sda1")).unwrap_err().to_string();
        assert_eq!(err, "volumes[0] is on /dev/sda1, the image's root device: set root_volume for that volume");
        assert!(apply(request(), &launch, None, &[], Some("/dev/xvda")).is_ok());
        assert!(apply(request(), &launch, None, &[], None).is_ok(), "EC2 decides when the image is unknown");
    }

    #[test]
    fn apply_owns_the_subnet_and_groups() {
        let groups = vec!["sg-1".to_string()];
        // Whatever the caller set is replaced.
        let stale = || request().subnet_id("subnet-stale").security_group_ids("sg-stale");
        let req = apply(stale(), &Ec2Launch::default(), Some("subnet-1"), &groups, None).unwrap();
        assert_eq!(req.get_subnet_id().as_deref(), Some("subnet-1"));
        assert_eq!(req.get_security_group_ids().as_deref(), Some(groups.as_slice()));
        assert!(req.get_network_interfaces().is_none());

        let public = Ec2Launch { public_ip: Some(true), ..Ec2Launch::default() };
        let req = apply(stale(), &public, Some("subnet-1"), &groups, None).unwrap();
        assert!(req.get_subnet_id().is_none());
        assert!(req.get_security_group_ids().is_none());
        let interfaces = req.get_network_interfaces().as_deref().unwrap();
        assert_eq!(interfaces.len(), 1);
        assert_eq!(interfaces[0].device_index(), Some(0));
        assert_eq!(interfaces[0].subnet_id(), Some("subnet-1"));
        assert_eq!(interfaces[0].groups(), groups.as_slice());
        assert_eq!(interfaces[0].associate_public_ip_address(), Some(true));

        let req = apply(stale(), &Ec2Launch::default(), None, &[], None).unwrap();
        assert!(req.get_subnet_id().is_none() && req.get_security_group_ids().is_none());
    }

    #[test]
    fn boot_mode_leaves_the_request_unchanged() {
        let launch = Ec2Launch { boot_mode: Some(BootMode::Uefi), ..Ec2Launch::default() };
        let with = apply(request(), &launch, Some("subnet-1"), &[], None).unwrap();
        let without = apply(request(), &Ec2Launch::default(), Some("subnet-1"), &[], None).unwrap();
        assert_eq!(format!("{:?}", with.as_input()), format!("{:?}", without.as_input()));
    }
}
